"""Hand-built patient timelines, each with the answer worked out from lines-of-therapy.md
(defaults: regimen window 30 d, drug gap 90 d, tandem window 180 d, maintenance window 365 d,
refractory window 60 d)."""

from __future__ import annotations

from registry.db.vocabulary import normalise_drug_name, read_vocabulary
from tests.derive.helpers import allo, auto, d, derive, prog, rx, summary, vrd, weekly_dex

MEL = rx("melphalan", "2020-05-30", "2020-05-31", "completed", "conditioning")


def plain(*extra, events=(), **kw):  # type: ignore[no-untyped-def]
    """VRd induction, melphalan, ASCT on 2020-06-01, then whatever ``extra`` adds."""
    return derive([vrd("2020-01-01", "2020-04-30"), MEL, *extra], [auto("2020-06-01")], events, **kw)


def test_01_vrd_asct_len_maintenance_relapse_drd() -> None:
    dv = plain(
        rx("lenalidomide", "2020-09-01", "2022-06-01", "progression", "maintenance", 10),
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
    assert [(ln.number, ln.start_rule, ln.end_reason) for ln in dv.lines] == [
        (1, "first", "progression"),
        (2, "progression", "ongoing"),
    ]
    assert dv.lines[0].includes_index_transplant
    assert dv.maintenance_has("lenalidomide")
    rel = dv.relapse_after_index
    assert rel is not None and rel.date == d("2022-06-01") and rel.source == "event"
    assert (
        rel.refractory_to("lenalidomide")
        and rel.drugs["lenalidomide"].free_interval_days == 0
        and rel.drugs["lenalidomide"].last_dose == 10
    )
    assert dv.first_regimen(2).contains("lenalidomide")  # type: ignore[union-attr]
    assert dv.transplant_roles[dv.index_transplant.key][0] == "index"  # type: ignore[union-attr]
    # what a clinician calls them: VRd, R maintenance, DRd
    assert [(r.acronym, r.backbone) for r in dv.regimens] == [
        ("VRd", "PI + IMiD + steroid"),
        ("R", "IMiD"),
        ("DRd", "anti-CD38 + IMiD + steroid"),
    ]


def test_02_tandem_transplant_is_one_line() -> None:
    second = auto("2020-09-15")  # 106 days after the first: a tandem
    dv = derive(
        [
            vrd("2020-01-01", "2020-04-30"),
            MEL,
            rx("lenalidomide", "2020-12-15", "2022-01-01", "progression"),
        ],
        [auto("2020-06-01"), second],
        [prog("2022-01-01")],
    )
    assert dv.tandem_transplant == second
    assert dv.transplant_roles[second.key] == ("tandem", 1)
    assert summary(dv)[1] == (1, "maintenance", "lenalidomide", "2020-12-15")
    assert len(dv.lines) == 1


def test_03_second_autologous_transplant_outside_tandem_window() -> None:
    late = auto("2021-01-20")  # 233 days after the index, no progression
    dv = derive([vrd("2020-01-01", "2020-04-30"), MEL], [auto("2020-06-01"), late])
    assert dv.tandem_transplant is None
    assert dv.transplant_roles[late.key][0] == "additional"


def test_04_salvage_transplant_after_progression_is_not_an_index() -> None:
    salvage = auto("2022-11-01")
    dv = derive(
        [
            vrd("2020-01-01", "2020-04-30"),
            MEL,
            rx("lenalidomide", "2020-09-01", "2022-06-01", "progression", "maintenance"),
            rx("carfilzomib", "2022-06-15", "2022-10-01", "completed"),
            rx("lenalidomide", "2022-06-15", "2022-10-01", "completed"),
            rx("melphalan", "2022-10-30", "2022-10-31", "completed"),
        ],
        [auto("2020-06-01"), salvage],
        [prog("2022-06-01")],
    )
    assert dv.index_transplant is not None and dv.index_transplant.date == d("2020-06-01")
    assert dv.transplant_roles[salvage.key] == ("salvage", 2)
    # the melphalan 2 days before the salvage transplant is conditioning, not a regimen
    assert [r.name for r in dv.regimens if r.line == 2] == ["carfilzomib + lenalidomide"]


def test_05_transplant_only_after_progression_gives_no_index() -> None:
    tx = auto("2020-09-01")
    dv = derive(
        [
            vrd("2020-01-01", "2020-04-30"),
            rx("pomalidomide", "2020-05-15", "2020-08-01"),
            rx("bortezomib", "2020-05-15", "2020-08-01"),
        ],
        [tx],
        [prog("2020-05-01")],
    )
    assert dv.index_transplant is None
    assert dv.transplant_roles[tx.key] == ("salvage", 2)
    assert [(ln.number, ln.start_rule) for ln in dv.lines] == [(1, "first"), (2, "progression")]
    assert dv.relapse_after_index is None


def test_06_weekly_dexamethasone_with_gaps_never_makes_lines() -> None:
    dv = derive(
        [
            rx("lenalidomide", "2020-01-01", "2020-12-31", "completed"),
            weekly_dex("2020-01-01", 20),
            weekly_dex("2020-08-01", 10, every=14),
            weekly_dex("2021-06-01", 4),
        ]
    )  # dexamethasone alone long after: still nothing
    assert len(dv.lines) == 1
    assert summary(dv) == [(1, "induction", "dexamethasone + lenalidomide", "2020-01-01")]


def test_07_brand_names_and_odd_casing_map_to_generics() -> None:
    vocab = {s: e.generic_name for e in read_vocabulary() for s in (e.generic_name, *e.synonyms)}
    for raw, generic in [
        ("REVLIMID", "lenalidomide"),
        ("  Velcade ", "bortezomib"),
        ("Darzalex Faspro", "daratumumab"),
        ("dEXAMETHASONE", "dexamethasone"),
        ("Imnovid®", "pomalidomide"),
        ("KYPROLIS", "carfilzomib"),
    ]:
        assert vocab[normalise_drug_name(raw)] == generic
    assert normalise_drug_name("Mystery  Drug") not in vocab


def test_08_relapse_documented_only_by_a_stop_reason() -> None:
    dv = plain(
        rx("lenalidomide", "2020-09-01", "2022-06-01", "progression", "maintenance"),
        rx("pomalidomide", "2022-06-20"),
        rx("bortezomib", "2022-06-20"),
    )
    rel = dv.relapse_after_index
    assert rel is not None and rel.date == d("2022-06-01") and rel.source == "stop_reason"
    assert dv.line(2).start == d("2022-06-20") and dv.line(2).start_rule == "progression"  # type: ignore[union-attr]
    assert not dv.first_regimen(2).contains("lenalidomide")  # type: ignore[union-attr]


def test_09_len_maintenance_continued_into_daratumumab_second_line() -> None:
    dv = plain(
        rx("lenalidomide", "2020-09-01", None, None, "maintenance"),
        rx("daratumumab", "2022-06-10"),
        weekly_dex("2022-06-10", 4),
        events=[prog("2022-06-01")],
    )
    l2 = dv.first_regimen(2)
    assert l2 is not None and l2.name == "daratumumab + dexamethasone + lenalidomide"
    assert l2.contains("lenalidomide")
    assert any(cont for _, cont in l2.exposures)  # lenalidomide carried over
    assert dv.relapse_after_index.refractory_to("lenalidomide")  # type: ignore[union-attr]
    assert dv.maintenance_has("lenalidomide")


def test_10_maintenance_stopped_for_toxicity_then_relapse_later() -> None:
    dv = plain(
        rx("lenalidomide", "2020-09-01", "2021-03-01", "toxicity", "maintenance"),
        rx("pomalidomide", "2022-06-15"),
        rx("bortezomib", "2022-06-15"),
        events=[prog("2022-06-01")],
    )
    assert dv.maintenance_has("lenalidomide")
    assert dv.maintenance_regimens[0].stop_reason == "toxicity"
    rel = dv.relapse_after_index
    assert rel is not None and not rel.refractory_to("lenalidomide")
    assert rel.drugs["lenalidomide"].free_interval_days == (d("2022-06-01") - d("2021-03-01")).days == 457
    assert dv.line(2).start_rule == "progression"  # type: ignore[union-attr]


def test_11_unplanned_addition_of_a_new_drug_starts_a_line() -> None:
    dv = derive(
        [
            rx("lenalidomide", "2020-01-01"),
            weekly_dex("2020-01-01", 8),
            rx("daratumumab", "2020-08-01"),
        ]
    )
    assert [(ln.number, ln.start_rule, ln.start.isoformat()) for ln in dv.lines] == [
        (1, "first", "2020-01-01"),
        (2, "new_drug", "2020-08-01"),
    ]
    assert dv.first_regimen(2).name == "daratumumab + lenalidomide"  # type: ignore[union-attr]


def test_12_drug_added_within_the_regimen_window_joins_the_regimen() -> None:
    dv = derive(
        [
            rx("lenalidomide", "2020-01-01", "2020-06-01"),
            rx("bortezomib", "2020-01-20", "2020-06-01"),
        ]
    )
    assert summary(dv) == [(1, "induction", "bortezomib + lenalidomide", "2020-01-01")]


def test_13_restart_after_a_long_gap_is_a_new_line() -> None:
    dv = derive(
        [
            rx("lenalidomide", "2020-01-01", "2020-06-01", "completed"),
            rx("lenalidomide", "2020-12-01", "2021-06-01", "completed"),
        ]
    )
    assert [(ln.number, ln.start_rule) for ln in dv.lines] == [(1, "first"), (2, "gap")]


def test_14_consolidation_then_maintenance() -> None:
    dv = plain(
        rx("bortezomib", "2020-07-15", "2020-11-15"),
        rx("lenalidomide", "2020-07-15", "2020-11-15"),
        rx("lenalidomide", "2020-12-20", None, None, "maintenance"),
    )
    assert summary(dv)[1:] == [
        (1, "consolidation", "bortezomib + lenalidomide", "2020-07-15"),
        (1, "maintenance", "lenalidomide", "2020-12-20"),
    ]
    assert len(dv.lines) == 1


def test_15_consolidation_by_intent() -> None:
    dv = plain(rx("bortezomib", "2020-08-01", "2020-10-01", "completed", "consolidation"))
    assert summary(dv)[1][1] == "consolidation"


def test_16_two_drug_post_transplant_regimen_lasting_long_is_maintenance() -> None:
    dv = plain(rx("bortezomib", "2020-08-01", "2022-01-01"), rx("lenalidomide", "2020-08-01", "2022-01-01"))
    assert summary(dv)[1] == (1, "maintenance", "bortezomib + lenalidomide", "2020-08-01")
    assert not dv.maintenance_has("lenalidomide") or dv.maintenance_regimens[0].contains("lenalidomide")


def test_17_ongoing_exposures_at_the_cutoff() -> None:
    dv = plain(rx("lenalidomide", "2020-09-01", None, "ongoing", "maintenance"))
    assert dv.lines[0].end is None and dv.lines[0].end_reason == "ongoing"
    assert dv.maintenance_regimens[0].end is None


def test_18_unknown_drugs_are_ignored() -> None:
    dv = derive(
        [
            rx("lenalidomide", "2020-01-01", "2020-06-01"),
            rx(None, "2020-04-01", "2020-05-01"),
            rx(None, "2021-01-01", "2021-02-01"),
        ]
    )
    assert len(dv.lines) == 1 and summary(dv) == [(1, "induction", "lenalidomide", "2020-01-01")]


def test_19_allogeneic_only_patient_has_no_index_transplant() -> None:
    tx = allo("2020-06-01")
    dv = derive([vrd("2020-01-01", "2020-04-30")], [tx])
    assert dv.index_transplant is None
    assert dv.transplant_roles[tx.key][0] == "allogeneic"
    assert all(r.phase == "induction" for r in dv.regimens)


def _refractory_at(days_after_end: int) -> bool:
    end = d("2022-01-01")
    p = end.toordinal() + days_after_end
    from datetime import date

    dv = plain(
        rx("lenalidomide", "2020-09-01", "2022-01-01", "toxicity", "maintenance"),
        events=[prog(date.fromordinal(p).isoformat())],
    )
    return dv.relapse_after_index.refractory_to("lenalidomide")  # type: ignore[union-attr]


def test_20_refractory_59_days_after_stopping() -> None:
    assert _refractory_at(59) is True


def test_21_not_refractory_61_days_after_stopping() -> None:
    assert _refractory_at(61) is False


def test_22_refractory_at_exactly_60_days() -> None:
    assert _refractory_at(60) is True


def test_23_rows_never_merge_across_a_transplant() -> None:
    dv = derive(
        [
            rx("lenalidomide", "2020-01-01", "2020-05-15"),
            MEL,
            rx("lenalidomide", "2020-06-20", None, None, "maintenance"),
        ],
        [auto("2020-06-01")],
    )
    lens = [e for e in dv.exposures if e.drug == "lenalidomide"]
    assert len(lens) == 2
    assert summary(dv)[1] == (1, "maintenance", "lenalidomide", "2020-06-20")


def test_24_same_drug_rows_merge_across_a_short_gap() -> None:
    dv = derive(
        [
            rx("lenalidomide", "2020-01-01", "2020-05-01"),
            rx("lenalidomide", "2020-06-01", "2020-10-01"),
        ]
    )
    lens = [e for e in dv.exposures if e.drug == "lenalidomide"]
    assert len(lens) == 1 and lens[0].end == d("2020-10-01") and len(lens[0].source_keys) == 2


def test_25_rows_never_merge_across_a_documented_progression() -> None:
    dv = derive(
        [
            rx("lenalidomide", "2020-01-01", "2021-01-01"),
            rx("lenalidomide", "2021-02-01", "2021-06-01"),
        ],
        events=[prog("2021-01-15")],
    )
    assert len([e for e in dv.exposures if e.drug == "lenalidomide"]) == 2
    assert [(ln.number, ln.start_rule) for ln in dv.lines] == [(1, "first"), (2, "progression")]


def test_26_restart_two_weeks_after_a_stop_for_progression_is_a_new_line() -> None:
    dv = plain(
        rx("lenalidomide", "2020-09-01", "2022-06-01", "progression", "maintenance"),
        rx("lenalidomide", "2022-06-15", None),
        weekly_dex("2022-06-15", 4),
    )
    lens = [e for e in dv.exposures if e.drug == "lenalidomide"]
    assert len(lens) == 3  # induction, maintenance, salvage
    assert dv.first_regimen(2).name == "dexamethasone + lenalidomide"  # type: ignore[union-attr]


def test_27_melphalan_days_before_transplant_is_conditioning() -> None:
    dv = derive(
        [vrd("2020-01-01", "2020-04-30"), rx("melphalan", "2020-05-28", "2020-05-29")],
        [auto("2020-06-01")],
    )
    mel = [e for e in dv.exposures if e.drug == "melphalan"]
    assert mel and mel[0].role == "conditioning"
    assert all("melphalan" not in r.drugs for r in dv.regimens)


def test_28_progression_closes_the_regimen_window_early() -> None:
    dv = derive(
        [
            rx("lenalidomide", "2020-01-01", "2020-01-20", "progression"),
            rx("bortezomib", "2020-01-25", "2020-04-01"),
        ]
    )
    assert summary(dv) == [
        (1, "induction", "lenalidomide", "2020-01-01"),
        (2, "salvage", "bortezomib", "2020-01-25"),
    ]


def test_29_event_and_stop_reason_for_one_relapse_are_one_episode() -> None:
    dv = plain(
        rx("lenalidomide", "2020-09-01", "2022-06-05", "progression", "maintenance"),
        events=[prog("2022-06-01")],
    )
    assert [(r.sequence, r.date.isoformat(), r.source) for r in dv.relapses] == [(1, "2022-06-01", "event")]


def test_30_line_end_is_the_latest_exposure_end_with_its_stop_reason() -> None:
    dv = derive(
        [
            rx("bortezomib", "2020-01-01", "2020-06-01", "completed"),
            rx("lenalidomide", "2020-01-01", "2020-06-10", "toxicity"),
        ]
    )
    assert dv.lines[0].end == d("2020-06-10") and dv.lines[0].end_reason == "toxicity"


def test_31_second_relapse_gives_a_third_line() -> None:
    dv = plain(
        rx("lenalidomide", "2020-09-01", "2022-06-01", "progression", "maintenance"),
        rx("pomalidomide", "2022-06-15", "2023-01-01", "progression"),
        rx("selinexor", "2023-01-20", "2023-06-01"),
        events=[prog("2022-06-01"), prog("2023-01-01")],
    )
    assert [r.sequence for r in dv.relapses] == [1, 2]
    assert [r.is_first_after_index for r in dv.relapses] == [True, False]
    assert [(ln.number, ln.start.isoformat()) for ln in dv.lines][-1] == (3, "2023-01-20")


def test_32_transplant_without_recorded_induction_starts_line_one() -> None:
    dv = derive([rx("lenalidomide", "2020-09-01", None, None, "maintenance")], [auto("2020-06-01")])
    assert dv.lines[0].start == d("2020-06-01") and dv.lines[0].includes_index_transplant
    assert summary(dv) == [(1, "maintenance", "lenalidomide", "2020-09-01")]
    assert dv.maintenance_has("lenalidomide")


def test_33_exposure_stopping_soon_after_the_next_regimen_is_not_continued() -> None:
    dv = plain(
        rx("lenalidomide", "2020-09-01", "2022-06-20", "toxicity", "maintenance"),
        rx("carfilzomib", "2022-06-10"),
        events=[prog("2022-06-01")],
    )
    assert dv.first_regimen(2).name == "carfilzomib"  # type: ignore[union-attr]


def test_34_exposure_running_until_death_is_continued() -> None:
    dv = plain(
        rx("lenalidomide", "2020-09-01", "2022-06-20", "death", "maintenance"),
        rx("carfilzomib", "2022-06-10", "2022-06-20", "death"),
        events=[prog("2022-06-01")],
        last_contact="2022-06-20",
        death="2022-06-20",
    )
    assert dv.first_regimen(2).name == "carfilzomib + lenalidomide"  # type: ignore[union-attr]


def test_35_switch_during_planned_maintenance_window_stays_line_one() -> None:
    # thalidomide maintenance switched to lenalidomide 5 months after transplant, no progression
    dv = plain(
        rx("thalidomide", "2020-08-15", "2020-10-15", "toxicity", "maintenance"),
        rx("lenalidomide", "2020-11-01", None, None, "maintenance"),
    )
    assert len(dv.lines) == 1
    assert [r.phase for r in dv.regimens] == ["induction", "maintenance", "maintenance"]
    assert dv.maintenance_has("lenalidomide")


def test_36_deterministic() -> None:
    a = plain(rx("lenalidomide", "2020-09-01", "2022-06-01", "progression", "maintenance"))
    b = plain(rx("lenalidomide", "2020-09-01", "2022-06-01", "progression", "maintenance"))
    assert summary(a) == summary(b) and [ln.start for ln in a.lines] == [ln.start for ln in b.lines]
