"""Load benchmark: the ETL against the bulk-load floor, in the same run, on the same machine.

    python bench/bench_load.py [--patients N | --huge] [--engines sqlite,postgresql] [--pg-url URL]
                               [--bundle DIR] [--skip-rederive]

For each engine it measures (1) the floor: inserting the same number of rows of the same
width into a plain table with the fastest path (sqlite3 executemany / psycopg COPY) inside one
transaction, and (2) `registry etl run` on a synthetic bundle of N patients (validation,
pseudonyms, staging, merge, quarantine, derivation), by stage, with its peak resident memory
(the loading process or its largest derivation worker; once after the load and its
derivation, once after everything), then `registry derive --all` and the study and outcomes
reports (HTML, released with a minimum cell of 11) on the loaded registry.
It prints rows/s for both, the ratios of the load and of the load with its derivation to the
floor, and the seconds of each step. ``--huge`` loads 1,000,000 patients (not for CI).
``--bundle DIR`` reuses (or, when missing, writes and keeps) the synthetic bundle in DIR;
``--skip-rederive`` leaves out `derive --all` (11 minutes at 1,000,000 patients).
Not a test: figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
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
FLOOR_CHUNK = 200_000  # rows built (untimed) then inserted (timed) at a time: memory stays bounded


def floor(engine_url: str, rows: int, width: int = 8) -> float:
    """Rows per second for a plain bulk insert of ``rows`` x ``width`` text/int columns."""
    eng = make_engine(engine_url)
    cols = ", ".join(f"c{i}" for i in range(width))
    with eng.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_floor"))
        conn.execute(
            text(
                "CREATE TABLE bench_floor (c0 BIGINT PRIMARY KEY, c1 TEXT, c2 TEXT, "
                "c3 TEXT, c4 TEXT, c5 FLOAT, c6 TEXT, c7 TEXT)"
            )
        )
    spent = 0.0
    with eng.begin() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        for start in range(0, rows, FLOOR_CHUNK):
            data = [
                (i, f"key-{i:012d}", "2020-01-01", "2020-02-01", "lenalidomide", 10.0, "x", "y")[:width]
                for i in range(start, min(rows, start + FLOOR_CHUNK))
            ]
            t = time.perf_counter()
            if conn.dialect.name == "postgresql":
                with raw.cursor() as cur, cur.copy(f"COPY bench_floor ({cols}) FROM STDIN") as cp:  # type: ignore[attr-defined]
                    for r in data:
                        cp.write_row(r)
            else:
                cur = raw.cursor()
                cur.executemany(f"INSERT INTO bench_floor VALUES ({', '.join('?' * width)})", data)
                cur.close()
            spent += time.perf_counter() - t
    with eng.begin() as conn:
        conn.execute(text("DROP TABLE bench_floor"))
    eng.dispose()
    return rows / spent


def load_and_report(url: str, bundle: Path, rederive: bool = True) -> dict[str, Any]:
    """In a fresh process (its peak memory is its own): migrate, load the bundle, derive
    everyone again, build both reports. Seconds of each step and the peak RSS in MiB."""
    from registry.reports.inputs import outcomes_report, study_report
    from registry.reports.outcomes import release_outcomes, render_outcomes
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
    for f in bundle.glob("*.csv"):
        if f.name.startswith("synth-"):
            continue
        with f.open() as fh:
            n_rows += sum(1 for _ in fh) - 1
    made = "reused" if reused else f"generated in {gen_s:.1f} s ({n_rows / gen_s:,.0f} rows/s)"
    print(f"bundle: {args.patients:,} patients, {n_rows:,} rows, {made}", flush=True)
    print(
        f"{'engine':<11}{'floor rows/s':>14}{'etl rows/s':>12}{'load':>8}{'+derive':>9}{'load s':>8}"
        f"{'derive s':>10}{'total s':>9}{'peak MiB':>10}"
    )
    spawn = multiprocessing.get_context("spawn")
    for name in args.engines.split(","):
        with bench_database(name, args.pg_url, work) as url:
            if url is None:
                continue
            fl = floor(url, n_rows)
            print(f"{name:<11}floor {fl:,.0f} rows/s; loading...", flush=True)
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
            floor_s = n_rows / fl
            print(
                f"{name:<11}{fl:>14,.0f}{n_rows / load_s:>12,.0f}{load_s / floor_s:>7.1f}x"
                f"{r['total_s'] / floor_s:>8.1f}x{load_s:>8.1f}{derive_s:>10.1f}{r['total_s']:>9.1f}"
                f"{r['peak_rss_mib']:>10,.0f}"
            )
            print(f"           stages: { {k: round(v, 1) for k, v in r['timings'].items()} }")
            print(f"           first derivation {1000 * derive_s / max(r['derived'], 1):.2f} ms a patient")
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
