"""Hand-built timelines for every rule revision 3 changed, each boundary on both sides, with the
answer worked out from the rules in docs/derivations.md (defaults: relapse episode 30 d,
progression lag 30 d, regimen window 30 d, drug gap 90 d, refractory window 60 d; "within N
days" is inclusive).

Every timeline: VRd induction (2020-01-01 to 2020-04-30), melphalan conditioning, the index
ASCT on 2020-06-01, lenalidomide maintenance from 2020-09-01. Relapses come in 2022, long after
line 1's planned post-transplant phase (365 days), so a new drug there would also be a new line
by rule 3: the timelines show what revision 3 decides on top of that.
"""

from __future__ import annotations

from registry.derive.core import Derivation
from tests.derive.helpers import d, days_after, derive, lines_of, prog, rx, summary, unmapped, vrd

INDEX = "2020-06-01"
RECORDED = "2022-03-31"  # the progression's first record in most timelines


def asct(*extra, events=(), **kw) -> Derivation:  # type: ignore[no-untyped-def]
    mel = rx("melphalan", "2020-05-30", "2020-05-30", "completed", "conditioning")
    return derive([vrd("2020-01-01", "2020-04-30"), mel, *extra], [_auto()], events, **kw)


def _auto():  # type: ignore[no-untyped-def]
    from tests.derive.helpers import auto

    return auto(INDEX)


def maintenance(end: str | None = "2022-03-24", stop: str | None = "completed", start: str = "2020-09-01"):  # type: ignore[no-untyped-def]
    return rx("lenalidomide", start, end, stop, "maintenance", 10)


def kd(start: str, end: str | None = None, intent: str | None = None) -> list:  # type: ignore[type-arg]
    """Carfilzomib (new to line 1) with dexamethasone."""
    return [rx("carfilzomib", start, end, None, intent), rx("dexamethasone", start, end, None, intent)]


def l2_pfs_event(dv: Derivation) -> str | None:
    day = dv.progression_after_line_start(2)
    return day.isoformat() if day else None


# ------------------------------------------------------------------ a relapse recorded twice
def test_r3_a_relapse_recorded_again_29_days_later_after_the_second_line_started_is_one_episode() -> None:
    dv = asct(
        maintenance("2022-03-01", "progression"),
        kd("2022-03-10"),
        events=[prog("2022-03-01", "progression"), prog(days_after("2022-03-01", 29), "relapse")],
    )
    assert lines_of(dv) == [(1, "first", "2020-01-01"), (2, "progression", "2022-03-10")]
    assert len(dv.relapses) == 1 and dv.relapses[0].date == d("2022-03-01")
    assert dv.relapses[0].events == 2  # the progression and the clinical relapse (and a stop reason)
    assert l2_pfs_event(dv) is None  # not a progression on the second line (r2 counted it: 20 days)


def test_r3_a_record_31_days_later_is_a_new_episode_and_ends_the_second_line_pfs() -> None:
    dv = asct(
        maintenance("2022-03-01", "progression"),
        kd("2022-03-10"),
        events=[prog("2022-03-01", "progression"), prog(days_after("2022-03-01", 31), "relapse")],
    )
    assert lines_of(dv) == [(1, "first", "2020-01-01"), (2, "progression", "2022-03-10")]
    assert [(r.date.isoformat(), r.events, r.line) for r in dv.relapses] == [
        ("2022-03-01", 1, 1),
        ("2022-04-01", 1, 2),
    ]
    assert l2_pfs_event(dv) == "2022-04-01"


def test_r3_a_duplicate_record_never_starts_another_line() -> None:
    # carfilzomib stopped and restarted within line 2, the relapse recorded again between: under
    # r2 the record split the two rows into two exposures and the restart opened line 3 (rule 1)
    dv = asct(
        maintenance("2022-03-01", "progression"),
        kd("2022-03-10", "2022-03-20"),
        rx("carfilzomib", "2022-04-15"),
        events=[prog("2022-03-01"), prog("2022-03-29", "relapse")],
    )
    assert [n for n, _, _ in lines_of(dv)] == [1, 2]
    assert summary(dv)[-1] == (2, "salvage", "carfilzomib + dexamethasone", "2022-03-10")
    assert [(e.start.isoformat(), e.end) for e in dv.exposures if e.drug == "carfilzomib"] == [
        ("2022-03-10", None)
    ]


# ------------------------------------------------------------------ salvage begun before the record
def test_r3_salvage_30_days_before_the_record_starts_the_second_line() -> None:
    start = days_after(RECORDED, -30)
    dv = asct(maintenance("2022-02-20"), kd(start), events=[prog(RECORDED)])
    assert lines_of(dv) == [(1, "first", "2020-01-01"), (2, "progression_recorded_later", start)]
    line1 = dv.lines[0]
    # maintenance stopped before the salvage began: line 1 ends then, for progression
    assert line1.end == d("2022-02-20") and line1.end_reason == "progression"
    (rel,) = dv.relapses
    assert rel.date == d(RECORDED) and rel.recorded_later and rel.line == 1
    # the regimen it caused is not "running" at it; lenalidomide stopped 39 days before: refractory
    assert rel.refractory["lenalidomide"] and not rel.refractory["bortezomib"]
    assert "carfilzomib" not in rel.refractory
    assert l2_pfs_event(dv) is None  # the episode that started the line is not its event


def test_r3_salvage_31_days_before_the_record_is_not_caused_by_it() -> None:
    start = days_after(RECORDED, -31)
    dv = asct(maintenance("2022-02-20"), kd(start), events=[prog(RECORDED)])
    # a new drug after line 1's planned phase: a new line by rule 3, on which the patient progressed
    assert lines_of(dv) == [(1, "first", "2020-01-01"), (2, "new_drug", start)]
    (rel,) = dv.relapses
    assert not rel.recorded_later and rel.line == 2 and rel.refractory["carfilzomib"]
    assert l2_pfs_event(dv) == RECORDED


def test_r3_salvage_recorded_later_keeps_lenalidomide_apart_from_maintenance() -> None:
    # DRd begun 10 days before the letter; maintenance stopped a week before that: the salvage
    # lenalidomide is a new exposure of line 2 (r2 merged it into the maintenance exposure)
    start = days_after(RECORDED, -10)
    dv = asct(
        maintenance(days_after(start, -7)),
        rx("daratumumab", start),
        rx("lenalidomide", start, None, None, None, 25),
        rx("dexamethasone", start),
        events=[prog(RECORDED)],
    )
    assert lines_of(dv)[1] == (2, "progression_recorded_later", start)
    assert summary(dv)[-1] == (2, "salvage", "daratumumab + dexamethasone + lenalidomide", start)
    assert dv.first_regimen(2).contains("lenalidomide") and dv.maintenance_has("lenalidomide")  # type: ignore[union-attr]
    assert [e.start.isoformat() for e in dv.exposures if e.drug == "lenalidomide"] == [
        "2020-01-01",
        "2020-09-01",
        start,
    ]
    (rel,) = dv.relapses
    assert (
        rel.refractory_to("lenalidomide")
        and rel.drugs["lenalidomide"].free_interval_days == 17
        and rel.drugs["lenalidomide"].last_dose == 10
    )


# ------------------------------------------------------------------ a new drug vs a refill
def test_r3_a_lenalidomide_refill_without_salvage_intent_starts_no_line() -> None:
    dv = asct(
        maintenance("2022-03-10"),
        rx("lenalidomide", days_after(RECORDED, -10), None, None, None, 10),
        events=[prog(RECORDED)],
    )
    assert lines_of(dv) == [(1, "first", "2020-01-01")]
    assert not dv.relapses[0].recorded_later


def test_r3_a_lenalidomide_restart_recording_salvage_intent_starts_the_second_line() -> None:
    start = days_after(RECORDED, -10)
    dv = asct(
        maintenance("2022-03-10"),
        rx("lenalidomide", start, None, None, "salvage", 25),
        events=[prog(RECORDED)],
    )
    assert lines_of(dv) == [(1, "first", "2020-01-01"), (2, "progression_recorded_later", start)]
    assert summary(dv)[-1] == (2, "salvage", "lenalidomide", start)


def test_r3_a_drug_of_line_one_again_needs_salvage_intent() -> None:
    start = days_after(RECORDED, -5)
    plain = asct(maintenance("2022-03-24"), rx("bortezomib", start), events=[prog(RECORDED)])
    assert [n for n, _, _ in lines_of(plain)] == [1]  # bortezomib was given in induction
    salvage = asct(
        maintenance("2022-03-24"), rx("bortezomib", start, None, None, "salvage"), events=[prog(RECORDED)]
    )
    assert lines_of(salvage)[1] == (2, "progression_recorded_later", start)


def test_r3_a_regimen_starting_on_the_record_day_is_plain_rule_one() -> None:
    dv = asct(maintenance("2022-03-24"), kd(RECORDED), events=[prog(RECORDED)])
    assert lines_of(dv)[1] == (2, "progression", RECORDED)
    assert not dv.relapses[0].recorded_later


def test_r3_a_regimen_before_the_index_transplant_is_never_moved_by_a_later_progression() -> None:
    # a progression 10 days after the transplant; carfilzomib 25 days before it, before the ASCT
    dv = derive(
        [
            vrd("2020-01-01", "2020-04-30"),
            rx("carfilzomib", "2020-05-17", "2020-05-25"),
            rx("melphalan", "2020-05-30", "2020-05-30", "completed", "conditioning"),
        ],
        [_auto()],
        [prog("2020-06-11")],
    )
    assert lines_of(dv) == [(1, "first", "2020-01-01")]
    assert dv.index_transplant is not None and not dv.relapses[0].recorded_later


# ------------------------------------------------------------------ a blinded trial drug
def test_r3_an_unmapped_drug_recording_an_intent_takes_part_in_lines() -> None:
    start = days_after(RECORDED, 5)
    dv = asct(
        maintenance("2022-03-24"),
        unmapped("study drug", start, intent="salvage"),
        rx("dexamethasone", start),
        events=[prog(RECORDED)],
    )
    assert lines_of(dv)[1] == (2, "progression", start)
    assert summary(dv)[-1] == (2, "salvage", "dexamethasone + study drug", start)
    assert not dv.first_regimen(2).contains("lenalidomide")  # type: ignore[union-attr]


def test_r3_an_unmapped_drug_without_intent_is_still_ignored() -> None:
    start = days_after(RECORDED, 5)
    dv = asct(
        maintenance("2022-03-24"),
        unmapped("study drug", start),
        rx("dexamethasone", start),
        events=[prog(RECORDED)],
    )
    assert [n for n, _, _ in lines_of(dv)] == [1]  # dexamethasone alone never starts a line


def test_r3_a_blinded_drug_begun_before_the_record_starts_the_line_it_caused() -> None:
    start = days_after(RECORDED, -3)
    dv = asct(
        maintenance("2022-03-24"), unmapped("study drug", start, intent="salvage"), events=[prog(RECORDED)]
    )
    assert lines_of(dv)[1] == (2, "progression_recorded_later", start)
