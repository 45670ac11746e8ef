"""Load benchmark: the ETL against the bulk-load floor, in the same run, on the same machine.

    python bench/bench_load.py [--patients N] [--engines sqlite,postgresql] [--pg-url URL]

For each engine it measures (1) the floor: inserting the same number of rows of the same
width into a plain table with the fastest path (sqlite3 executemany / psycopg COPY) inside one
transaction, and (2) `registry etl run` on a synthetic bundle of N patients (validation,
pseudonyms, staging, merge, quarantine, derivation). It prints rows/s for both and the ratio.
Not a test: figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.databases import bench_arguments, bench_database
from etl.pipeline import run_bundle
from etl.synth import write_bundle
from registry.db.database import make_engine
from registry.db.setup import prepare
from registry.derive.run import derive_pending

KEY = b"benchmark-key-not-secret-0123456789"


def floor(engine_url: str, rows: int, width: int = 8) -> float:
    """Rows per second for a plain bulk insert of ``rows`` x ``width`` text/int columns."""
    eng = make_engine(engine_url)
    data = [
        (i, f"key-{i:012d}", "2020-01-01", "2020-02-01", "lenalidomide", 10.0, "x", "y")[:width]
        for i in range(rows)
    ]
    cols = ", ".join(f"c{i}" for i in range(width))
    with eng.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_floor"))
        conn.execute(
            text(
                "CREATE TABLE bench_floor (c0 BIGINT PRIMARY KEY, c1 TEXT, c2 TEXT, "
                "c3 TEXT, c4 TEXT, c5 FLOAT, c6 TEXT, c7 TEXT)"
            )
        )
    t = time.perf_counter()
    with eng.begin() as conn:
        raw = conn.connection.dbapi_connection
        if conn.dialect.name == "postgresql":
            with raw.cursor() as cur, cur.copy(f"COPY bench_floor ({cols}) FROM STDIN") as cp:
                for r in data:
                    cp.write_row(r)
        else:
            cur = raw.cursor()
            cur.executemany(f"INSERT INTO bench_floor VALUES ({', '.join('?' * width)})", data)
            cur.close()
    dt_ = time.perf_counter() - t
    with eng.begin() as conn:
        conn.execute(text("DROP TABLE bench_floor"))
    eng.dispose()
    return rows / dt_


def main() -> None:
    args = bench_arguments(__doc__.splitlines()[0] if __doc__ else "")
    work = Path(tempfile.mkdtemp(prefix="mmreg-bench-"))
    t = time.perf_counter()
    write_bundle(work / "bundle", patients=args.patients, seed=42, dirty=True)
    gen_s = time.perf_counter() - t
    n_rows = 0
    for f in (work / "bundle").glob("*.csv"):
        with f.open() as fh:
            n_rows += sum(1 for _ in fh) - 1
    print(
        f"bundle: {args.patients:,} patients, {n_rows:,} rows, generated in {gen_s:.1f} s "
        f"({n_rows / gen_s:,.0f} rows/s)"
    )
    print(
        f"{'engine':<11}{'floor rows/s':>14}{'etl rows/s':>12}{'ratio':>8}{'load s':>8}"
        f"{'derive s':>10}{'total s':>9}"
    )
    for name in args.engines.split(","):
        with bench_database(name, args.pg_url, work) as url:
            if url is None:
                continue
            eng = make_engine(url)
            prepare(eng)
            fl = floor(url, n_rows)
            t = time.perf_counter()
            s = run_bundle(eng, work / "bundle", KEY)
            total = time.perf_counter() - t
            # what an operator runs after a rules upgrade: every patient again, over derived data
            t = time.perf_counter()
            again = derive_pending(eng, all_patients=True)
            rederive_s = time.perf_counter() - t
            eng.dispose()
            load_s = s.timings.get("load_s", 0.0)
            print(
                f"{name:<11}{fl:>14,.0f}{n_rows / load_s:>12,.0f}{fl / (n_rows / load_s):>7.1f}x"
                f"{load_s:>8.1f}{s.timings.get('derive_s', 0):>10.1f}{total:>9.1f}"
            )
            stages = {k: v for k, v in s.timings.items() if k.endswith("_s")}
            print(f"           stages: {stages}")
            print(
                f"           derive --all afterwards: {again.patients:,} patients in {rederive_s:.1f} s "
                f"({1000 * rederive_s / max(again.patients, 1):.2f} ms each; first derivation "
                f"{1000 * s.timings.get('derive_s', 0) / max(s.derived_patients or 1, 1):.2f} ms each)"
            )


if __name__ == "__main__":
    main()
