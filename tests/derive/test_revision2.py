"""Hand-built timelines for every rule revision 2 changed, each boundary on both sides, with
the answer worked out from the rules in docs/derivations.md (defaults: regimen window 30 d,
drug gap 90 d, tandem window 180 d / planned 365 d, conditioning window 14 d, maintenance
window 365 d, refractory window 60 d, relapse episode 30 d; "within N days" is inclusive)."""

from __future__ import annotations

from registry.derive.core import Derivation
from tests.derive.helpers import (
    allo,
    auto,
    d,
    days_after,
    derive,
    lines_of,
    prog,
    rx,
    summary,
    vrd,
    weekly_dex,
)

INDEX = "2020-06-01"


def mel(transplant: str, days_before: int = 2, intent: str | None = "conditioning") -> object:
    day = days_after(transplant, -days_before)
    return rx("melphalan", day, day, "completed", intent)


def asct(*extra, transplants=(), events=(), **kw) -> Derivation:  # type: ignore[no-untyped-def]
    """VRd induction, conditioning, index ASCT on 2020-06-01, then ``extra``."""
    return derive(
        [vrd("2020-01-01", "2020-04-30"), mel(INDEX), *extra],
        [auto(INDEX), *transplants],
        events,
        **kw,
    )


def len_maintenance(start: str = "2020-09-01", end: str | None = None, stop: str | None = None) -> object:
    return rx("lenalidomide", start, end, stop, "maintenance", 10)


# ------------------------------------------------------------------ line 1 before the index transplant
def test_r2_drug_added_during_induction_stays_in_line_one() -> None:
    dv = asct(rx("daratumumab", "2020-03-01", "2020-04-30", "completed"), len_maintenance())
    assert lines_of(dv) == [(1, "first", "2020-01-01")]  # r1: a new line on 2020-03-01 (new drug)
    assert summary(dv) == [
        (1, "induction", "bortezomib + dexamethasone + lenalidomide", "2020-01-01"),
        (1, "induction", "bortezomib + daratumumab + lenalidomide", "2020-03-01"),
        (1, "maintenance", "lenalidomide", "2020-09-01"),
    ]
    assert dv.maintenance_has("lenalidomide") and dv.lines[0].includes_index_transplant


def test_r2_switch_during_induction_stays_in_line_one() -> None:
    dv = derive(
        [
            rx("bortezomib", "2020-01-01", "2020-03-10", "toxicity"),
            rx("lenalidomide", "2020-01-01", "2020-04-30"),
            rx("carfilzomib", "2020-03-20", "2020-04-30"),
            mel(INDEX),
            len_maintenance(),
        ],
        [auto(INDEX)],
    )
    assert lines_of(dv) == [(1, "first", "2020-01-01")]
    assert [r.phase for r in dv.regimens] == ["induction", "induction", "maintenance"]


def test_r2_mobilisation_with_gcsf_and_plerixafor_is_part_of_line_one() -> None:
    dv = derive(
        [
            vrd("2020-01-01", "2020-04-10"),
            rx("cyclophosphamide", "2020-04-25", "2020-04-26", "completed", "mobilisation", 3000),
            rx("filgrastim", "2020-04-28", "2020-05-08", "completed"),
            rx("plerixafor", "2020-05-07", "2020-05-07", "completed"),
            mel(INDEX),
            len_maintenance(),
        ],
        [auto(INDEX)],
    )
    assert lines_of(dv) == [(1, "first", "2020-01-01")]
    assert summary(dv) == [
        (1, "induction", "bortezomib + dexamethasone + lenalidomide", "2020-01-01"),
        (1, "mobilisation", "cyclophosphamide", "2020-04-25"),
        (1, "maintenance", "lenalidomide", "2020-09-01"),
    ]
    drugs = {e.drug for e in dv.exposures}
    assert "filgrastim" not in drugs and "plerixafor" not in drugs  # supportive: never a regimen
    assert dv.index_transplant is not None and dv.index_transplant.date == d(INDEX)


def test_r2_mobilisation_without_recorded_intent_still_stays_in_line_one() -> None:
    dv = derive(
        [vrd("2020-01-01", "2020-04-10"), rx("cyclophosphamide", "2020-04-25", "2020-04-26"), mel(INDEX)],
        [auto(INDEX)],
    )
    assert lines_of(dv) == [(1, "first", "2020-01-01")]  # r1: line 2 on 2020-04-25 (new drug)
    assert summary(dv)[1] == (1, "induction", "cyclophosphamide", "2020-04-25")


def test_r2_deferred_transplant_after_a_long_pause_is_still_line_one() -> None:
    tx = "2021-03-01"
    dv = derive(
        [
            vrd("2020-01-01", "2020-04-30"),
            rx("lenalidomide", "2020-10-01", "2021-01-31"),  # > 90 days after: r1 gap rule
            mel(tx),
            len_maintenance("2021-06-01"),
        ],
        [auto(tx)],
    )
    assert lines_of(dv) == [(1, "first", "2020-01-01")]
    assert dv.index_transplant is not None and dv.index_transplant.date == d(tx)
    assert dv.maintenance_has("lenalidomide")


def test_r2_only_a_documented_progression_splits_induction() -> None:
    tx = "2020-09-01"
    dv = derive(
        [
            vrd("2020-01-01", "2020-04-30"),
            rx("daratumumab", "2020-05-20", "2020-08-01"),
            mel(tx),
        ],
        [auto(tx)],
        [prog("2020-05-10")],
    )
    assert lines_of(dv) == [(1, "first", "2020-01-01"), (2, "progression", "2020-05-20")]
    assert dv.index_transplant is None  # progressed before any autologous transplant
    assert dv.transplant_roles[next(iter(dv.transplant_roles))][0] == "salvage"


# --------------------------------------------------------------------------- tandems
def _second_auto(days: int, planned: bool | None = None) -> Derivation:
    second = days_after(INDEX, days)
    return asct(mel(second), transplants=[auto(second, planned)])


def test_r2_second_transplant_180_days_later_is_a_tandem() -> None:
    dv = _second_auto(180)
    assert dv.tandem_transplant is not None and len(dv.lines) == 1


def test_r2_second_transplant_181_days_later_starts_a_new_line() -> None:
    dv = _second_auto(181)
    assert dv.tandem_transplant is None
    assert lines_of(dv) == [(1, "first", "2020-01-01"), (2, "transplant", days_after(INDEX, 181))]
    roles = sorted(dv.transplant_roles.values())
    assert roles == [("additional", 2), ("index", 1)]
    assert dv.lines[0].end == d(INDEX)  # line 1 ends with its transplant, before line 2


def test_r2_planned_tandem_up_to_365_days() -> None:
    assert _second_auto(365, planned=True).tandem_transplant is not None
    dv = _second_auto(366, planned=True)
    assert dv.tandem_transplant is None and [ln.start_rule for ln in dv.lines] == ["first", "transplant"]
    assert _second_auto(200, planned=False).tandem_transplant is None


def test_r2_new_drug_between_the_two_transplants_means_no_tandem() -> None:
    second = "2020-09-15"
    dv = asct(
        rx("lenalidomide", "2020-07-15", "2020-08-30", "completed"),
        mel(second),
        transplants=[auto(second)],
    )
    assert dv.tandem_transplant is None
    assert lines_of(dv)[-1] == (2, "transplant", second)


def test_r2_auto_allo_tandem_is_one_line() -> None:
    dv = asct(transplants=[allo("2020-10-01")])
    assert dv.tandem_transplant is not None and dv.tandem_transplant.type == "allogeneic"
    assert sorted(r for r, _ in dv.transplant_roles.values()) == ["index", "tandem"]
    assert len(dv.lines) == 1


def test_r2_late_allogeneic_transplant_starts_a_new_line() -> None:
    dv = asct(transplants=[allo("2021-01-01")])
    assert lines_of(dv) == [(1, "first", "2020-01-01"), (2, "transplant", "2021-01-01")]
    assert sorted(dv.transplant_roles.values()) == [("allogeneic", 2), ("index", 1)]


def test_r2_late_second_asct_without_progression_starts_a_new_line() -> None:
    late = "2021-06-01"
    dv = asct(
        len_maintenance("2020-09-01", "2021-05-01", "completed"),
        mel(late),
        rx("lenalidomide", "2021-06-25", None),  # within 30 days: belongs to the new line
        transplants=[auto(late)],
    )
    assert lines_of(dv) == [(1, "first", "2020-01-01"), (2, "transplant", late)]
    assert summary(dv)[-1] == (2, "salvage", "lenalidomide", "2021-06-25")
    assert dv.lines[0].end == d("2021-05-01") and dv.lines[0].end_reason == "completed"
    assert dv.maintenance_has("lenalidomide")  # line 1's maintenance is untouched


# --------------------------------------------------------------------------- salvage transplants
def test_r2_salvage_transplant_with_no_drugs_starts_the_new_line() -> None:
    salvage = "2022-07-15"
    dv = asct(
        len_maintenance("2020-09-01", "2022-06-01", "progression"),
        mel(salvage),
        transplants=[auto(salvage)],
        events=[prog("2022-06-01")],
    )
    assert lines_of(dv) == [(1, "first", "2020-01-01"), (2, "progression", salvage)]
    assert dv.lines[0].end_reason == "progression" and dv.lines[0].end == d("2022-06-01")
    assert sorted(dv.transplant_roles.values()) == [("index", 1), ("salvage", 2)]
    rel = dv.relapse_after_index
    assert rel is not None and rel.line == 1 and rel.refractory_to("lenalidomide")


def test_r2_salvage_transplant_after_reinduction_belongs_to_that_line() -> None:
    salvage = "2022-11-01"
    dv = asct(
        len_maintenance("2020-09-01", "2022-06-01", "progression"),
        rx("carfilzomib", "2022-06-15", "2022-10-01", "completed"),
        mel(salvage),
        transplants=[auto(salvage)],
        events=[prog("2022-06-01")],
    )
    assert lines_of(dv) == [(1, "first", "2020-01-01"), (2, "progression", "2022-06-15")]
    assert sorted(dv.transplant_roles.values()) == [("index", 1), ("salvage", 2)]
    assert dv.lines[1].end == d(salvage)  # the line holds its transplant


# --------------------------------------------------------------------------- conditioning window
def _melphalan_days_before(days: int) -> Derivation:
    return derive([vrd("2020-01-01", "2020-04-30"), mel(INDEX, days, intent=None)], [auto(INDEX)])


def test_r2_melphalan_14_days_before_transplant_is_conditioning() -> None:
    dv = _melphalan_days_before(14)
    assert [e.role for e in dv.exposures if e.drug == "melphalan"] == ["conditioning"]
    assert all("melphalan" not in r.drugs for r in dv.regimens)


def test_r2_melphalan_15_days_before_transplant_is_a_regimen_in_line_one() -> None:
    dv = _melphalan_days_before(15)
    assert [e.role for e in dv.exposures if e.drug == "melphalan"] == ["regimen"]
    assert summary(dv)[-1] == (1, "induction", "melphalan", days_after(INDEX, -15))
    assert len(dv.lines) == 1


# --------------------------------------------------------------------------- windows are inclusive
def _second_drug_on_day(n: int) -> Derivation:
    return derive(
        [
            rx("lenalidomide", "2020-01-01", "2020-12-31"),
            rx("bortezomib", days_after("2020-01-01", n), "2020-12-31"),
        ]
    )


def test_r2_drug_starting_on_day_30_joins_the_regimen() -> None:
    dv = _second_drug_on_day(30)
    assert summary(dv) == [(1, "induction", "bortezomib + lenalidomide", "2020-01-01")]


def test_r2_drug_starting_on_day_31_is_a_new_regimen_and_line() -> None:
    dv = _second_drug_on_day(31)
    assert lines_of(dv) == [(1, "first", "2020-01-01"), (2, "new_drug", "2020-02-01")]
    assert dv.lines[0].end == d("2020-01-31") and dv.lines[0].end_reason == "next_line"


def _progression_records(days_apart: int) -> Derivation:
    return asct(
        len_maintenance("2020-09-01", "2022-06-01", "progression"),
        events=[prog(days_after("2022-06-01", days_apart))],
    )


def test_r2_progression_records_30_days_apart_are_one_relapse() -> None:
    dv = _progression_records(30)
    assert [(r.sequence, r.date.isoformat(), r.source) for r in dv.relapses] == [
        (1, "2022-06-01", "stop_reason")
    ]


def test_r2_progression_records_31_days_apart_are_two_relapses() -> None:
    dv = _progression_records(31)
    assert [(r.sequence, r.date.isoformat()) for r in dv.relapses] == [(1, "2022-06-01"), (2, "2022-07-02")]


# --------------------------------------------------------------------------- progression-day treatment
def test_r2_drug_starting_on_the_progression_day() -> None:
    dv = asct(
        len_maintenance("2020-09-01", "2022-06-01", "progression"),
        rx("daratumumab", "2022-06-01"),
        rx("pomalidomide", "2022-06-01"),
        weekly_dex("2022-06-01", 4),
        events=[prog("2022-06-01")],
    )
    assert lines_of(dv) == [(1, "first", "2020-01-01"), (2, "progression", "2022-06-01")]
    rel = dv.relapse_after_index
    assert rel is not None and rel.line == 1
    assert rel.refractory == {
        "bortezomib": False,
        "dexamethasone": False,
        "lenalidomide": True,
    }  # daratumumab and pomalidomide start that day: not running at the progression
    assert (
        rel.refractory_to("lenalidomide")
        and rel.drugs["lenalidomide"].free_interval_days == 0
        and rel.drugs["lenalidomide"].last_dose == 10
    )
    assert dv.lines[0].end == d("2022-05-31") and dv.lines[0].end_reason == "progression"
    mt = dv.maintenance_regimens[0]
    assert mt.end == d("2022-05-31") and mt.stop_reason == "progression"


def test_r2_no_merge_of_an_ongoing_row_across_a_progression() -> None:
    dv = derive(
        [rx("lenalidomide", "2020-01-01"), rx("lenalidomide", "2021-02-01", "2021-06-01")],
        events=[prog("2021-01-15")],
    )
    assert len([e for e in dv.exposures if e.drug == "lenalidomide"]) == 2  # r1: one exposure
    assert lines_of(dv) == [(1, "first", "2020-01-01"), (2, "progression", "2021-02-01")]
    assert dv.lines[0].end == d("2021-01-31")  # no overlapping lines
    assert dv.relapses[0].refractory_to("lenalidomide")


def test_r2_lines_never_overlap() -> None:
    dv = derive(
        [
            rx("lenalidomide", "2020-01-01", "2020-12-31", "completed"),
            rx("daratumumab", "2020-08-01", "2021-03-01", "completed"),
        ]
    )
    assert lines_of(dv) == [(1, "first", "2020-01-01"), (2, "new_drug", "2020-08-01")]
    assert dv.lines[0].end == d("2020-07-31") and dv.lines[0].end_reason == "next_line"
    for a, b in zip(dv.lines, dv.lines[1:], strict=False):
        assert a.end is not None and a.end < b.start


# --------------------------------------------------------------------------- consolidation and maintenance
def test_r2_recorded_maintenance_intent_wins_over_the_consolidation_heuristic() -> None:
    dv = asct(
        rx("bortezomib", "2020-07-15", "2020-11-15", "completed", "maintenance"),
        rx("lenalidomide", "2020-07-15", "2020-11-15", "completed", "maintenance"),
    )
    # two drugs, 44 days after the transplant, 123 days long: r1 called it consolidation
    assert summary(dv)[1] == (1, "maintenance", "bortezomib + lenalidomide", "2020-07-15")
    assert dv.maintenance_has("lenalidomide")


def test_r2_consolidation_drug_going_on_alone_is_maintenance_from_the_first_day_alone() -> None:
    dv = asct(
        rx("bortezomib", "2020-07-15", "2020-10-15", "completed", "consolidation"),
        rx("lenalidomide", "2020-07-15", None, None, "consolidation"),
    )
    assert summary(dv)[1:] == [
        (1, "consolidation", "bortezomib + lenalidomide", "2020-07-15"),
        (1, "maintenance", "lenalidomide", "2020-10-16"),
    ]
    assert dv.regimens[1].end == d("2020-10-15") and dv.maintenance_has("lenalidomide")


def test_r2_regimen_lasts_until_its_last_non_steroid_drug_stops() -> None:
    dv = asct(len_maintenance("2020-09-01", "2021-03-01", "toxicity"), weekly_dex("2020-09-01", 40))
    mt = dv.maintenance_regimens[0]
    assert mt.name == "dexamethasone + lenalidomide"
    assert mt.end == d("2021-03-01") and mt.stop_reason == "toxicity"  # not the last dex dose


# --------------------------------------------------------------------------- documented progression
def test_r2_stop_for_progression_on_an_unmapped_drug_documents_a_progression() -> None:
    dv = asct(
        len_maintenance("2020-09-01", "2021-06-01", "completed"),
        rx(None, "2021-07-01", "2022-03-01", "progression"),
    )
    rel = dv.relapse_after_index
    assert rel is not None and rel.date == d("2022-03-01") and rel.source == "stop_reason"


def test_r2_bisphosphonate_running_across_all_lines_is_never_part_of_a_regimen() -> None:
    dv = asct(
        rx("zoledronic acid", "2020-01-15", None),
        rx("denosumab", "2022-07-01", None),
        rx("acyclovir", "2020-06-02", "2021-06-01"),
        len_maintenance("2020-09-01", "2022-06-01", "progression"),
        rx("daratumumab", "2022-06-15"),
        rx("lenalidomide", "2022-06-15", dose=25),
        weekly_dex("2022-06-15", 8),
        events=[prog("2022-06-01")],
    )
    assert summary(dv) == [
        (1, "induction", "bortezomib + dexamethasone + lenalidomide", "2020-01-01"),
        (1, "maintenance", "lenalidomide", "2020-09-01"),
        (2, "salvage", "daratumumab + dexamethasone + lenalidomide", "2022-06-15"),
    ]
    assert not {"zoledronic acid", "denosumab", "acyclovir"} & {e.drug for e in dv.exposures}
    assert "zoledronic acid" not in dv.relapses[0].refractory


# --------------------------------------------------------------------------- the docs' worked example
def test_r2_worked_example_in_docs_derivations() -> None:
    """docs/derivations.md, "A worked example": mobilisation and a salvage transplant."""
    first, salvage = "2020-06-02", "2022-05-10"
    dv = derive(
        [
            vrd("2020-01-06", "2020-04-20"),
            rx("daratumumab", "2020-03-02", "2020-04-20", "completed"),
            [
                rx("zoledronic acid", days_after("2020-01-10", 28 * i), days_after("2020-01-10", 28 * i))
                for i in range(30)
            ],
            rx("cyclophosphamide", "2020-05-01", "2020-05-02", "completed", "mobilisation"),
            rx("filgrastim", "2020-05-04", "2020-05-13", "completed", "mobilisation"),
            rx("plerixafor", "2020-05-12", "2020-05-12", "completed", "mobilisation"),
            rx("melphalan", "2020-05-26", "2020-05-26", "completed"),
            rx("lenalidomide", "2020-09-01", "2022-03-15", "progression", "maintenance", 10),
            rx("melphalan", "2022-05-08", "2022-05-08", "completed"),
            rx("carfilzomib", "2022-05-25", "2022-11-30", "completed"),
            weekly_dex("2022-05-25", 20),
        ],
        [auto(first), auto(salvage)],
        [prog("2022-03-22")],
    )
    assert lines_of(dv) == [(1, "first", "2020-01-06"), (2, "progression", salvage)]
    assert summary(dv) == [
        (1, "induction", "bortezomib + dexamethasone + lenalidomide", "2020-01-06"),
        (1, "induction", "bortezomib + daratumumab + lenalidomide", "2020-03-02"),
        (1, "mobilisation", "cyclophosphamide", "2020-05-01"),
        (1, "maintenance", "lenalidomide", "2020-09-01"),
        (2, "salvage", "carfilzomib + dexamethasone", "2022-05-25"),
    ]
    assert sorted(dv.transplant_roles.values()) == [("index", 1), ("salvage", 2)]
    assert [e.role for e in dv.exposures if e.drug == "melphalan"] == ["conditioning", "conditioning"]
    line1 = dv.lines[0]
    assert line1.end == d("2022-03-15") and line1.end_reason == "progression"
    assert [(r.date.isoformat(), r.source) for r in dv.relapses] == [("2022-03-15", "stop_reason")]
    rel = dv.relapse_after_index
    assert (
        rel is not None
        and rel.refractory_to("lenalidomide")
        and rel.drugs["lenalidomide"].free_interval_days == 0
    )
    # induction 2020-01-06..2020-04-20 (106 days) + maintenance 2020-09-01..2022-03-15 (561 days)
    assert rel.drugs["lenalidomide"].exposure_days == 106 + 561 and rel.drugs["lenalidomide"].last_dose == 10
