"""Derivation in worker processes stores exactly what one process stores, and a re-derivation
whose result did not change leaves the stored rows (ids, derivation run) as they were."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, bindparam, select, text, update

from etl.pipeline import run_bundle
from etl.synth import write_bundle
from registry.db.models import DERIVED_TABLES, Patient
from registry.derive import run as derive_run
from registry.derive.run import derive_pending
from tests.conftest import TEST_KEY

KEY = TEST_KEY.encode()


def derived_state(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        return {t: sorted(map(repr, conn.execute(text(f"SELECT * FROM {t}")).all())) for t in DERIVED_TABLES}


def test_workers_store_exactly_what_one_process_stores(
    engine: Engine, twin: Engine, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(derive_run, "PARALLEL_MIN", 100)  # a small registry, split anyway
    monkeypatch.setattr(derive_run, "PARALLEL_BATCH", 70)
    write_bundle(tmp_path / "b", patients=400, seed=21)
    for eng in (engine, twin):
        assert run_bundle(eng, tmp_path / "b", KEY, derive=False).status == "succeeded"
    serial = derive_pending(engine, workers=1)
    parallel = derive_pending(twin, workers=2)
    assert serial.patients == parallel.patients == 400
    assert serial.written == parallel.written == 400
    state = derived_state(engine)
    assert sum(len(rows) for rows in state.values()) > 400 * 5
    assert state == derived_state(twin)  # ids included: allocated in patient order either way


def test_a_rederivation_that_changes_nothing_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    write_bundle(tmp_path / "b", patients=60, seed=22)
    run_bundle(engine, tmp_path / "b", KEY)
    before = derived_state(engine)
    again = derive_pending(engine, all_patients=True)
    assert again.patients == 60 and again.written == 0
    assert derived_state(engine) == before  # same ids, same derivation run

    # one patient's treatment changes: only that patient's rows are written again
    with engine.begin() as conn:
        key = conn.execute(select(Patient.patient_key).order_by(Patient.patient_key).limit(1)).scalar_one()
        conn.execute(text("UPDATE treatments SET end_date = NULL WHERE patient_key = :k"), {"k": key})
        conn.execute(update(Patient).values(needs_derivation=True))
    third = derive_pending(engine)
    assert third.patients == 60 and third.written == 1
    after = derived_state(engine)
    changed = {t for t in after if after[t] != before[t]}
    assert "patient_summaries" in changed and "exposures" in changed
    with engine.connect() as conn:
        runs = conn.execute(
            text("SELECT patient_key FROM patient_summaries WHERE derivation_run_id = :r"),
            {"r": third.derivation_run_id},
        ).all()
    assert [r[0] for r in runs] == [key]


_OWNERS = {  # each kind of id and the table that holds it
    "exposure_id": "exposures",
    "line_id": "lines_of_therapy",
    "regimen_id": "regimens",
    "relapse_id": "relapses",
}
_ID_KINDS = {"l2_line_id": "line_id", **{k: k for k in _OWNERS}}


def canonical_state(engine: Engine) -> dict[str, list[tuple]]:
    """Every derived row with its ids replaced by (patient, rank among the patient's ids of
    that kind) and no derivation run: equal for two registries holding the same derivations
    whatever ids they allocated."""
    with engine.connect() as conn:
        rank: dict[str, dict[int, tuple[str, int]]] = {}
        for kind, table in _OWNERS.items():
            rows = conn.execute(text(f"SELECT patient_key, {kind} FROM {table} ORDER BY patient_key, {kind}"))
            seen: dict[str, int] = {}
            rank[kind] = {}
            for pk, i in rows:
                seen[pk] = seen.get(pk, 0) + 1
                rank[kind][i] = (pk, seen[pk])
        out = {}
        for table in DERIVED_TABLES:
            result = conn.execute(text(f"SELECT * FROM {table}"))
            cols = list(result.keys())
            rows = []
            for row in result:
                v = {
                    c: (rank[_ID_KINDS[c]].get(x) if c in _ID_KINDS and x is not None else x)
                    for c, x in zip(cols, row, strict=True)
                    if c != "derivation_run_id"
                }
                rows.append(repr(sorted(v.items())))
            out[table] = sorted(rows)
    return out


def test_a_changed_derivation_keeps_ids_and_rewrites_only_what_changed(
    engine: Engine, twin: Engine, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    write_bundle(tmp_path / "b", patients=150, seed=23)
    for eng in (engine, twin):
        assert run_bundle(eng, tmp_path / "b", KEY).status == "succeeded"
    with engine.connect() as conn:
        keys = [k for (k,) in conn.execute(text("SELECT patient_key FROM patients ORDER BY patient_key"))]
        before = {
            k: sorted(
                conn.execute(
                    text("SELECT exposure_id FROM exposures WHERE patient_key = :k"), {"k": k}
                ).scalars()
            )
            for k in keys
        }
        first_run = conn.execute(text("SELECT MAX(derivation_run_id) FROM derivation_runs")).scalar()
    dosed, dropped = keys[:40], keys[40:60]
    for eng in (engine, twin):
        with eng.begin() as conn:
            # a new dose on one row: the same exposures, lines and relapses, another value
            for k in dosed:
                conn.execute(
                    text(
                        "UPDATE treatments SET dose_mg = COALESCE(dose_mg, 0) + 3 WHERE treatment_key = "
                        "(SELECT MAX(treatment_key) FROM treatments WHERE patient_key = :k)"
                    ),
                    {"k": k},
                )
            # a patient's first treatment row gone: often other exposures and lines
            for k in dropped:
                conn.execute(
                    text(
                        "DELETE FROM treatments WHERE treatment_key = (SELECT MIN(treatment_key) "
                        "FROM treatments WHERE patient_key = :k)"
                    ),
                    {"k": k},
                )
            conn.execute(update(Patient).values(needs_derivation=True))
    with twin.begin() as conn:  # the twin derives everyone from nothing
        for table in DERIVED_TABLES:
            conn.execute(text(f"DELETE FROM {table}"))
    # compared by worker processes, batches of 40, against the twin deriving from nothing alone
    monkeypatch.setattr(derive_run, "PARALLEL_MIN", 50)
    monkeypatch.setattr(derive_run, "PARALLEL_BATCH", 40)
    diffed = derive_pending(engine, workers=2)
    derive_pending(twin, workers=1)
    assert canonical_state(engine) == canonical_state(twin)
    assert 20 < diffed.written <= 60  # some new doses change no derived value
    with engine.connect() as conn:
        for k in dosed:
            rows = conn.execute(
                text("SELECT exposure_id, derivation_run_id FROM exposures WHERE patient_key = :k"), {"k": k}
            ).all()
            assert sorted(i for i, _ in rows) == before[k]  # ids kept
        runs = conn.execute(
            text(
                "SELECT derivation_run_id, COUNT(*) FROM exposures WHERE patient_key IN :k GROUP BY 1"
            ).bindparams(bindparam("k", expanding=True)),
            {"k": dosed},
        ).all()
    by_run = dict(runs)
    # the rewritten exposures carry the new run, the others still the first one
    assert by_run.get(diffed.derivation_run_id, 0) > 0 and by_run.get(first_run, 0) > 0


def test_only_the_tables_whose_digest_changed_are_read_again() -> None:
    tables = list(derive_run._COLUMNS)
    n = derive_run._TABLE_DIGEST
    now = "".join(f"{i:0{n}x}" for i in range(len(tables)))
    always = {"exposures", "lines_of_therapy", "regimens", "relapses", "patient_summaries"}
    assert derive_run._changed_tables(now, now) == always  # the id tables and the summary
    links = tables.index("exposure_sources")
    other = now[: links * n] + "f" * n + now[(links + 1) * n :]
    assert derive_run._changed_tables(other, now) == always | {"exposure_sources"}
    assert derive_run._changed_tables(None, now) == set(tables)  # derived before digests per table
    assert derive_run._changed_tables(now[:32], now) == set(tables)


def test_only_patients_with_stored_rows_are_deleted_before_writing(
    engine: Engine, twin: Engine, tmp_path: Path
) -> None:
    """A first derivation deletes nothing (nobody has derived rows yet); a derivation under
    other rules replaces everyone's rows, old ones deleted first, leaving what a registry
    derived once under those rules holds."""
    import dataclasses

    from sqlalchemy import event

    from registry.derive.params import DEFAULT_PARAMETERS

    write_bundle(tmp_path / "b", patients=80, seed=24)
    for eng in (engine, twin):
        assert run_bundle(eng, tmp_path / "b", KEY, derive=False).status == "succeeded"
    deletes: list[str] = []

    def count(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(statement.split()[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        first = derive_pending(engine, workers=1)
        assert first.patients == 80 and deletes == []
        other = dataclasses.replace(DEFAULT_PARAMETERS, drug_gap_days=DEFAULT_PARAMETERS.drug_gap_days + 7)
        again = derive_pending(engine, all_patients=True, params=other, workers=1)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert again.written == 80
    assert {t.lower() for t in deletes} >= {"exposures", "patient_summaries", "lines_of_therapy"}
    derive_pending(twin, params=other, workers=1)
    assert canonical_state(engine) == canonical_state(twin)


def test_the_writer_keeps_at_most_two_batches_a_worker_in_flight(
    engine: Engine, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Batches are handed to the workers as the writer takes results, not all at once: results
    the writer has not stored yet wait in its memory (1.75 GiB near the end of a
    1,000,000-patient derivation when they could pile up)."""
    import multiprocessing.pool

    from registry.db.vocabulary import vocabulary_map
    from registry.derive.params import DEFAULT_PARAMETERS

    monkeypatch.setattr(derive_run, "PARALLEL_MIN", 10)
    monkeypatch.setattr(derive_run, "PARALLEL_BATCH", 5)
    write_bundle(tmp_path / "b", patients=60, seed=25)
    assert run_bundle(engine, tmp_path / "b", KEY, derive=False).status == "succeeded"
    handed: list[int] = []
    apply_async = multiprocessing.pool.Pool.apply_async

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        handed.append(1)
        return apply_async(self, *args, **kwargs)

    monkeypatch.setattr(multiprocessing.pool.Pool, "apply_async", counted)
    with engine.connect() as conn:
        keys = [k for (k,) in conn.execute(text("SELECT patient_key FROM patients ORDER BY patient_key"))]
        version = DEFAULT_PARAMETERS.rules_version("test")
        batches = derive_run._derived_batches(
            conn, keys, vocabulary_map(conn), DEFAULT_PARAMETERS, version, 1, workers=2
        )
        taken = []
        for batch, _changes in batches:
            taken.append(batch)
            assert len(handed) - len(taken) < 2 * 2 + 1  # in flight after this one was taken
    assert len(taken) == 12 and len(handed) == 12
    assert [k for b in taken for k in b] == keys


def test_folding_laboratory_progressions_into_episodes_equals_another_pass(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A laboratory progression joining an episode already derived adds ``labs`` to its
    sources without deriving the patient again: every patient of a synthetic registry (with
    laboratory series) derives to the same rows as with another full pass each time."""
    from registry.db.vocabulary import VOCABULARY_VERSION, vocabulary_map
    from registry.derive import core
    from registry.derive.inputs import read_inputs
    from registry.derive.params import DEFAULT_PARAMETERS as P
    from registry.derive.rows import patient_rows

    write_bundle(tmp_path / "b", patients=400, seed=23)
    assert run_bundle(sqlite_engine, tmp_path / "b", KEY, derive=False).status == "succeeded"
    with sqlite_engine.connect() as conn:
        keys = list(conn.execute(select(Patient.patient_key).order_by(Patient.patient_key)).scalars())
        vocab = vocabulary_map(conn)
        inputs = read_inputs(conn, keys, vocab)
    version = P.rules_version(VOCABULARY_VERSION)
    folded = []
    original = core._fold_into_episodes

    def counting(*args):  # type: ignore[no-untyped-def]
        done = original(*args)
        folded.append(done)
        return done

    monkeypatch.setattr(core, "_fold_into_episodes", counting)
    shortcut = {k: patient_rows(core.derive_patient(inputs[k], P), vocab.by_synonym, version) for k in keys}
    monkeypatch.setattr(core, "_fold_into_episodes", lambda *args: False)
    passes = {k: patient_rows(core.derive_patient(inputs[k], P), vocab.by_synonym, version) for k in keys}
    assert folded.count(True) >= 100  # (a progression found only in the series: test_labs_derivation)
    assert {k: r.tables for k, r in shortcut.items()} == {k: r.tables for k, r in passes.items()}
    sources = [row for r in shortcut.values() for row in r.tables["relapses"]]
    assert any("labs" in str(row) for row in sources)
