"""The databases a benchmark runs on: a SQLite file in the work folder, or a throw-away
PostgreSQL database on the test server, dropped afterwards — unless ``--keep`` asks to keep
them (the SQLite file then goes to the current folder), to measure more on a registry that took
long to build (a million patients: an hour and a half)."""

from __future__ import annotations

import argparse
import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import create_engine, text


@contextlib.contextmanager
def bench_database(engine_name: str, pg_url: str, work: Path, keep: bool = False) -> Iterator[str | None]:
    """The URL of a fresh database for ``engine_name`` (None, with a printed reason, when no
    PostgreSQL server can be reached); with ``keep`` it is left in place and its URL printed."""
    if engine_name == "sqlite":
        url = f"sqlite:///{(Path.cwd() if keep else work).resolve() / f'bench-{uuid.uuid4().hex[:6]}.db'}"
        yield url
        if keep:
            print(f"kept: {url}")
        return
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    db = f"mmreg_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as c:
            c.execute(text(f"CREATE DATABASE {db}"))
    except Exception as exc:
        print(f"postgresql: skipped ({str(exc).splitlines()[0]})")
        admin.dispose()
        yield None
        return
    url = pg_url.rsplit("/", 1)[0] + f"/{db}"
    try:
        yield url
    finally:
        if keep:
            print(f"kept: {url}")
        else:
            with admin.connect() as c:
                c.execute(text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        admin.dispose()


def bench_arguments(
    description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """The options every benchmark takes: --patients (or --huge), --engines, --pg-url, and
    those that ``extra`` adds."""
    ap = argparse.ArgumentParser(description=description)
    if extra is not None:
        extra(ap)
    ap.add_argument("--patients", type=int, default=int(os.environ.get("BENCH_PATIENTS", 20000)))
    ap.add_argument(
        "--huge", action="store_true", help="1,000,000 patients (a national registry; not for CI)"
    )
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--keep", action="store_true", help="keep the registries (their URLs are printed)")
    ap.add_argument(
        "--pg-url",
        default=os.environ.get(
            "REGISTRY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = ap.parse_args()
    if args.huge:
        args.patients = 1_000_000
    return args
