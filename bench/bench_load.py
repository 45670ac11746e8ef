"""Load benchmark: the ETL against the bulk-load floor, in the same run, on the same machine.

    python bench/bench_load.py [--patients N | --huge] [--engines sqlite,postgresql] [--pg-url URL]
                               [--bundle DIR] [--skip-rederive] [--keep]

For each engine it measures (1) the floor: the bundle's CSV files loaded as they are into
plain text tables by the engine's bulk path (`sqlite3 .import`, or `COPY FROM STDIN` as
`psql \\copy` does) in one transaction, and (2) `registry etl run` on a synthetic bundle of N
patients (validation, pseudonyms, staging, merge, quarantine, derivation), by stage, with its
peak resident memory (the loading process or its largest derivation worker; once after the
load and its derivation, once after everything) and the registry's size on disk after them,
then `registry derive --all` and the study and outcomes reports (HTML, released with a minimum
cell of 11) on the loaded registry.
It prints rows/s for both, the ratios of the load and of the load with its derivation to the
floor, and the seconds of each step. ``--huge`` loads 1,000,000 patients (not for CI).
``--bundle DIR`` reuses (or, when missing, writes and keeps) the synthetic bundle in DIR;
``--skip-rederive`` leaves out `derive --all` (11 minutes at 1,000,000 patients); ``--keep``
keeps each registry (its URL printed) for measuring more on it.
Not a test: figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import multiprocessing
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.databases import bench_arguments, bench_database
from etl.pipeline import run_bundle
from etl.synth import write_bundle
from registry.db.database import make_engine
from registry.db.setup import prepare
from registry.derive.run import derive_pending

KEY = b"benchmark-key-not-secret-0123456789"
FLOOR_CHUNK = 200_000  # rows inserted at a time by the Python floor: memory stays bounded


def bundle_files(bundle: Path) -> list[Path]:
    """The bundle's data files (not the generator's truth files)."""
    return sorted(f for f in bundle.glob("*.csv") if not f.name.startswith("synth-"))


def floor(engine_url: str, bundle: Path) -> tuple[int, float, str]:
    """The bulk-load floor: the bundle's CSV files, as they are, each into a plain table of
    text columns named by its header, in one transaction: ``sqlite3 .import`` (the command-line
    shell, when installed; else the Python equivalent: ``csv.reader`` and one ``executemany``
    per chunk) and ``COPY ... FROM STDIN (FORMAT csv)`` fed the file's bytes, as ``psql \\copy``
    does. Returns (rows, seconds, how)."""
    eng = make_engine(engine_url)
    files = bundle_files(bundle)
    tables = {}
    for f in files:
        with f.open(newline="") as fh:
            tables[f] = (f"floor_{f.stem}", next(csv.reader(fh)))
    with eng.begin() as conn:
        for table, header in tables.values():
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
            conn.execute(text(f"CREATE TABLE {table} ({', '.join(f'{c} TEXT' for c in header)})"))
    shell = shutil.which("sqlite3")
    t = time.perf_counter()
    if eng.dialect.name == "sqlite" and shell is not None:
        how = "sqlite3 .import"
        script = (
            "BEGIN;\n"
            + "".join(f".import --csv --skip 1 '{f}' {table}\n" for f, (table, _h) in tables.items())
            + "COMMIT;\n"
        )
        subprocess.run([shell, str(eng.url.database)], input=script, text=True, check=True)
    else:
        how = "COPY FROM STDIN (csv)" if eng.dialect.name == "postgresql" else "csv.reader + executemany"
        with eng.begin() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            for f, (table, header) in tables.items():
                if eng.dialect.name == "postgresql":
                    sql = f"COPY {table} FROM STDIN (FORMAT csv, HEADER true)"
                    with f.open("rb") as fh, raw.cursor() as cur, cur.copy(sql) as cp:  # type: ignore[attr-defined]
                        while block := fh.read(1 << 20):
                            cp.write(block)
                else:
                    sql = f"INSERT INTO {table} VALUES ({', '.join('?' * len(header))})"
                    with f.open(newline="") as fh:
                        reader = csv.reader(fh)
                        next(reader)
                        cur = raw.cursor()
                        while chunk := list(itertools.islice(reader, FLOOR_CHUNK)):
                            cur.executemany(sql, chunk)
                        cur.close()
    spent = time.perf_counter() - t
    with eng.begin() as conn:
        rows = 0
        for table, _h in tables.values():
            rows += int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() or 0)
            conn.execute(text(f"DROP TABLE {table}"))
    eng.dispose()
    return rows, spent, how


def load_and_report(url: str, bundle: Path, rederive: bool = True) -> dict[str, Any]:
    """In a fresh process (its peak memory is its own): migrate, load the bundle, derive
    everyone again, build both reports. Seconds of each step and the peak RSS in MiB."""
    from registry.reports.inputs import outcomes_report, study_report
    from registry.reports.outcomes import release_outcomes
    from registry.reports.outcomes_render import render_outcomes
    from registry.reports.release import release

    eng = make_engine(url)
    prepare(eng)
    out: dict[str, Any] = {}
    t = time.perf_counter()
    s = run_bundle(eng, bundle, KEY)
    out["total_s"] = time.perf_counter() - t
    out["timings"] = {k: v for k, v in s.timings.items() if k.endswith("_s")}
    out["derived"] = s.derived_patients or 0
    out["load_peak_rss_mib"] = _peak_mib()  # the load and its derivation, before the reports
    out["size_mib"] = registry_size_mib(eng)
    # what an operator runs after a rules upgrade: every patient again, over derived data
    if rederive:
        t = time.perf_counter()
        again = derive_pending(eng, all_patients=True)
        out["rederive_s"] = time.perf_counter() - t
        out["rederived"] = again.patients
    t = time.perf_counter()
    release(study_report(eng, "lenalidomide-relapse"), "html", 11, "patients")
    out["study_s"] = time.perf_counter() - t
    t = time.perf_counter()
    render_outcomes(release_outcomes(outcomes_report(eng).data, 11), "html")
    out["outcomes_s"] = time.perf_counter() - t
    eng.dispose()
    out["peak_rss_mib"] = _peak_mib()
    return out


def registry_size_mib(eng: Any) -> float:
    """The registry's size on disk: PostgreSQL's ``pg_database_size`` (after a checkpoint), or
    SQLite's pages (the write-ahead log checkpointed into the file first)."""
    with eng.connect() as conn:
        if eng.dialect.name == "postgresql":
            conn.execute(text("CHECKPOINT"))
            size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        else:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
            size = pages * conn.exec_driver_sql("PRAGMA page_size").scalar_one()
    return int(size) / 2**20


def _peak_mib() -> float:
    """Peak resident memory so far of this process or its largest finished derivation worker."""
    peak_kib = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,  # the derivation workers
    )
    return peak_kib / 1024


def _child(url: str, bundle: Path, rederive: bool, send: Any) -> None:
    try:
        send.send(load_and_report(url, bundle, rederive))
    except BaseException as exc:  # reported by the parent
        send.send(exc)


def main() -> None:
    def extra(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--bundle", type=Path, help="reuse (or write and keep) the bundle here")
        ap.add_argument("--skip-rederive", action="store_true", help="leave out derive --all")

    args = bench_arguments(__doc__.splitlines()[0] if __doc__ else "", extra)
    work = Path(tempfile.mkdtemp(prefix="mmreg-bench-"))
    try:
        _run(args, work)
    finally:  # the registries (33 GB at 1,000,000 patients) and a bundle not asked to be kept
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> None:
    bundle = args.bundle or work / "bundle"
    t = time.perf_counter()
    reused = (bundle / "manifest.json").exists()
    if reused:
        truth = json.loads((bundle / "synth-truth.json").read_text())
        if truth["patients"] != args.patients:
            sys.exit(f"{bundle} holds {truth['patients']:,} patients, not {args.patients:,}")
    else:
        write_bundle(bundle, patients=args.patients, seed=42, dirty=True)
    gen_s = time.perf_counter() - t
    n_rows = 0
    for f in bundle_files(bundle):
        with f.open(newline="") as fh:
            n_rows += sum(1 for _ in csv.reader(fh)) - 1
    made = "reused" if reused else f"generated in {gen_s:.1f} s ({n_rows / gen_s:,.0f} rows/s)"
    print(f"bundle: {args.patients:,} patients, {n_rows:,} rows, {made}", flush=True)
    print(
        f"{'engine':<11}{'floor rows/s':>14}{'etl rows/s':>12}{'load':>8}{'+derive':>9}{'load s':>8}"
        f"{'derive s':>10}{'total s':>9}{'peak MiB':>10}"
    )
    spawn = multiprocessing.get_context("spawn")
    for name in args.engines.split(","):
        with bench_database(name, args.pg_url, work, args.keep) as url:
            if url is None:
                continue
            floor_rows, floor_s, how = floor(url, bundle)
            fl = floor_rows / floor_s
            print(
                f"{name:<11}floor: the {floor_rows:,} rows of the CSV files in {floor_s:.1f} s by {how}"
                f" ({fl:,.0f} rows/s); loading...",
                flush=True,
            )
            # a process of its own (not a pool's: daemonic, it could not start derivation workers)
            receive, send = spawn.Pipe(duplex=False)
            child = spawn.Process(target=_child, args=(url, bundle, not args.skip_rederive, send))
            child.start()
            r = receive.recv()
            child.join()
            if isinstance(r, BaseException):
                raise r
            load_s = r["timings"].get("load_s", 0.0)
            derive_s = r["timings"].get("derive_s", 0.0)
            print(
                f"{name:<11}{fl:>14,.0f}{n_rows / load_s:>12,.0f}{load_s / floor_s:>7.1f}x"
                f"{r['total_s'] / floor_s:>8.1f}x{load_s:>8.1f}{derive_s:>10.1f}{r['total_s']:>9.1f}"
                f"{r['peak_rss_mib']:>10,.0f}"
            )
            print(f"           stages: { {k: round(v, 1) for k, v in r['timings'].items()} }")
            print(f"           first derivation {1000 * derive_s / max(r['derived'], 1):.2f} ms a patient")
            print(f"           registry on disk after the load and its derivation: {r['size_mib']:,.0f} MiB")
            print(
                f"           peak memory: {r['load_peak_rss_mib']:,.0f} MiB loading and deriving, "
                f"{r['peak_rss_mib']:,.0f} MiB with the reports"
            )
            if "rederive_s" in r:
                print(
                    f"           derive --all afterwards: {r['rederived']:,} patients in "
                    f"{r['rederive_s']:.1f} s ({1000 * r['rederive_s'] / max(r['rederived'], 1):.2f} ms each)"
                )
            print(
                f"           reports on the loaded registry: study {r['study_s']:.1f} s, "
                f"outcomes {r['outcomes_s']:.1f} s"
            )


if __name__ == "__main__":
    main()
