"""Second-night benchmark: what a nightly full export costs once the registry holds the site.

    python bench/bench_nights.py [--patients N] [--engines sqlite,postgresql] [--pg-url URL]

For each engine, in the same run and on the same machine:
  night 1  the bundle loaded into an empty registry (the baseline);
  night 2  the next night's full export: exported_at one day later, about 1% of the treatment
           rows changed and 0.5% deleted by the hospital;
  night 3  night 2's bundle delivered again with a new exported_at and no change;
  night 4  night 2's values again, every file's rows in another order with CRLF line endings;
  night 5  night 2's values again, every field of every file quoted.
Nights 3-5 change no record: they must re-derive nobody.
It prints each night's seconds (load, derivation) and its ratio to the first night. Not a test:
figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.databases import bench_arguments, bench_database
from etl.pipeline import run_bundle
from etl.synth import write_bundle
from registry.db.database import make_engine
from registry.db.setup import prepare

KEY = b"benchmark-key-not-secret-0123456789"


def next_night(src: Path, dst: Path, day: int, change: float, delete: float, seed: int) -> tuple[int, int]:
    """Copy a bundle as the next night's export: treatments changed / deleted at the given
    rates, exported_at ``day`` days later. Returns (changed, deleted) rows."""
    shutil.copytree(src, dst)
    rng = random.Random(seed)
    path = dst / "treatments.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    kept, changed, deleted = [], 0, 0
    for row in rows:
        u = rng.random()
        if u < delete:
            deleted += 1
            continue
        if u < delete + change:
            row["dose_mg"] = "7" if row["dose_mg"] != "7" else "8"
            changed += 1
        kept.append(row)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(kept)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["exported_at"] = manifest["exported_at"].replace("T02:00", f"T{2 + day:02d}:00")
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return changed, deleted


def redelivered(src: Path, dst: Path, hour: int, *, shuffle: bool, quote_all: bool) -> None:
    """``src``'s values delivered again: rows shuffled (CRLF endings) or every field quoted."""
    shutil.copytree(src, dst)
    rng = random.Random(hour)
    for path in dst.glob("*.csv"):
        if path.name.startswith("synth-"):
            continue
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
        if shuffle:
            rng.shuffle(rows)
        quoting = csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(
                fh, fieldnames=fields, lineterminator="\r\n" if shuffle else "\n", quoting=quoting
            )
            w.writeheader()
            w.writerows(rows)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["exported_at"] = manifest["exported_at"].replace("T03:00", f"T{hour:02d}:00")
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))


def main() -> None:
    args = bench_arguments(__doc__.splitlines()[0] if __doc__ else "")
    work = Path(tempfile.mkdtemp(prefix="mmreg-nights-"))
    write_bundle(work / "night1", patients=args.patients, seed=42)
    changed, deleted = next_night(work / "night1", work / "night2", 1, 0.01, 0.005, seed=7)
    shutil.copytree(work / "night2", work / "night3")
    manifest = json.loads((work / "night3" / "manifest.json").read_text())
    manifest["exported_at"] = manifest["exported_at"].replace("T03:00", "T04:00")
    (work / "night3" / "manifest.json").write_text(json.dumps(manifest, indent=2))
    redelivered(work / "night2", work / "night4", 5, shuffle=True, quote_all=False)
    redelivered(work / "night2", work / "night5", 6, shuffle=False, quote_all=True)
    print(f"{args.patients:,} patients; night 2: {changed:,} treatment rows changed, {deleted:,} deleted")
    for name in args.engines.split(","):
        with bench_database(name, args.pg_url, work, args.keep) as url:
            if url is None:
                continue
            engine = make_engine(url)
            prepare(engine)
            first = None
            for night in ("night1", "night2", "night3", "night4", "night5"):
                t = time.perf_counter()
                s = run_bundle(engine, work / night, KEY)
                total = time.perf_counter() - t
                first = first or total
                files = s.files["treatments"]
                print(
                    f"{name:<11}{night}: {total:7.1f} s ({total / first:4.2f}x the first night)  "
                    f"load {s.timings.get('load_s', 0):.1f} s, merge {s.timings.get('merge_s', 0):.1f} s, "
                    f"derive {s.timings.get('derive_s', 0):.1f} s for {s.derived_patients or 0:,} patients "
                    f"({s.derived_written or 0:,} with changed results); treatments: "
                    f"{files.unchanged_rows:,} rows unchanged (not read again), {files.changed:,} changed, "
                    f"{files.retired:,} retired"
                )
            engine.dispose()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
