"""A large file is checked by worker processes while the loading process reads and stages:
the registry ends exactly as when one process does everything (rows, quarantine with its
reasons in order, findings, change log, unmapped drug names, counts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from etl import reading
from etl.pipeline import run_bundle
from etl.synth import write_bundle
from registry.core.config import Resources
from tests.conftest import TEST_KEY
from tests.etl.bundles import read_csv, write_csv
from tests.etl.test_unchanged_rows import state

KEY = TEST_KEY.encode()


def _ordered(engine: Engine) -> dict[str, list[tuple]]:
    """The quarantine and the findings in the order they were stored (their ids)."""
    with engine.connect() as conn:
        return {
            "quarantine": [
                tuple(r)
                for r in conn.execute(
                    text("SELECT file, row_number, reasons FROM quarantine ORDER BY file, quarantine_id")
                )
            ],
            "findings": [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT file, row_number, rule, record_key FROM input_findings "
                        "ORDER BY file, finding_id"
                    )
                )
            ],
        }


def same_registry(engine: Engine, twin: Engine) -> bool:
    """Every clinical, derived, quarantine and change-log row equal, and the quarantine and
    the findings stored in the same order."""
    return state(engine) == state(twin) and _ordered(engine) == _ordered(twin)


def calls_to(monkeypatch: Any, owner: Any, name: str) -> list[tuple[Any, ...]]:
    """Record the arguments of every call to ``owner.name`` (which still does its work)."""
    calls: list[tuple[Any, ...]] = []
    real = getattr(owner, name)

    def recorded(*args: Any) -> Any:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(owner, name, recorded)
    return calls


def test_workers_check_a_large_file_exactly_as_one_process_does(
    engine: Engine, twin: Engine, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "b"
    write_bundle(bundle, patients=300, seed=31, dirty=True)
    fields, rows = read_csv(bundle / "treatments.csv")
    rows[5]["drug"] = "Unheard-of-mab"  # an unmapped name, counted from a worker
    rows[40]["start_date"] = "2020-02-30"  # rejected in a chunk a worker checks
    # a quoted field part-way through a chunk: from there on records are split while reading
    rows[250]["drug"] = "Dexamethasone, oral"
    write_csv(bundle / "treatments.csv", fields, rows)
    with (bundle / "treatments.csv").open("a") as fh:
        fh.write("RX-EXTRA,SYN0000001,too,few\n")  # malformed: quarantined in file order
    seen: dict[str, bool] = {}
    checked = reading._checked_pieces

    def spy(pieces, spec, r, parallel):  # type: ignore[no-untyped-def]
        seen[spec.name] = parallel
        return checked(pieces, spec, r, parallel)

    monkeypatch.setattr(reading, "_checked_pieces", spy)
    monkeypatch.setattr(reading, "PARALLEL_CHECK_BYTES", 0)  # every file without on_valid
    par = run_bundle(engine, bundle, KEY, chunk_rows=97, resources=Resources(load_workers=2))
    assert seen == {
        "patients": False,  # feeds the patient facts: checked here
        "follow_up": False,
        "transplants": True,
        "treatments": True,
        "disease_events": True,
        "labs": True,
    }
    monkeypatch.setattr(reading, "PARALLEL_CHECK_BYTES", 1 << 60)
    one = run_bundle(twin, bundle, KEY, chunk_rows=97)
    assert not any(seen.values())
    assert par.status == one.status == "succeeded"
    t = par.files["treatments"]
    assert t.quarantined >= 2 and t.warnings >= 1 and t.read == len(rows) + 1
    for name, f in par.files.items():
        g = one.files[name]
        assert (f.read, f.loaded, f.quarantined, f.findings, f.warnings, f.changed) == (
            g.read,
            g.loaded,
            g.quarantined,
            g.findings,
            g.warnings,
            g.changed,
        ), name
    assert par.warnings == one.warnings
    assert par.unmapped_drugs == one.unmapped_drugs and any("unheard" in k for k in par.unmapped_drugs)
    assert same_registry(engine, twin)


def test_the_load_reports_its_stages_without_counting_any_twice(engine: Engine, tmp_path: Path) -> None:
    """The run's timings name each stage of reading the files (read, validate, pseudonymise,
    map, stage) besides the merge (with its parts) and the derivation; in one process they are disjoint parts
    of the load, so they add up to no more than it (pseudonyms made while validating are the
    pseudonymise stage's, not the validate stage's)."""
    write_bundle(tmp_path / "b", patients=150, seed=32, labs=False)
    s = run_bundle(engine, tmp_path / "b", KEY, chunk_rows=200)
    stages = {k: s.timings[f"{k}_s"] for k in reading.LOAD_STAGES}
    assert all(v > 0 for v in stages.values()), stages
    assert sum(stages.values()) + s.timings["merge_s"] <= s.timings["load_s"], (stages, s.timings)
    assert s.timings["derive_s"] > 0
    # the merge's parts: the change log, the upserts and retirement, within it
    parts = [s.timings[k] for k in ("changelog_s", "upsert_s", "retire_s")]
    assert all(v > 0 for v in parts[:2]) and sum(parts) <= s.timings["merge_s"], s.timings
