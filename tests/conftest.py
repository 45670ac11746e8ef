"""Test fixtures: every database test runs on SQLite and on PostgreSQL.

The PostgreSQL server comes from ``--pg-url`` or ``REGISTRY_TEST_PG_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, the CI server). Each test gets its
own database, cloned from a migrated template, and it is dropped afterwards; no other database
on the server is touched. If no server is reachable the PostgreSQL variants are skipped with
the reason — except under CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from registry.db.database import make_engine
from registry.db.setup import prepare

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TEST_KEY = "test-pseudonym-key-0123456789"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pg-url",
        default=os.environ.get("REGISTRY_TEST_PG_URL", DEFAULT_PG_URL),
        help="PostgreSQL server for the postgresql variants (a maintenance database URL)",
    )
    parser.addoption(
        "--engines",
        default=os.environ.get("REGISTRY_TEST_ENGINES", "sqlite,postgresql"),
        help="comma-separated engines to run database tests on",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        engines = [e.strip() for e in metafunc.config.getoption("--engines").split(",") if e]
        only = metafunc.definition.get_closest_marker("engines")  # a test of one engine's path
        if only is not None:
            engines = [e for e in engines if e in only.args]
        metafunc.parametrize("backend", engines, scope="session")


# kept between tests: the schema and the drug vocabulary; every other table is emptied
KEPT_TABLES = {"alembic_version", "drugs", "drug_synonyms"}


class PgServer:
    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = create_engine(url, isolation_level="AUTOCOMMIT")
        self.template: str | None = None
        self.pool: list[str] = []  # migrated databases, emptied after use, for the next test

    def url_of(self, name: str) -> str:
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def borrow(self) -> str:
        """A migrated database with empty registry tables (cloning the template costs about
        0.3 s a test; emptying a used one a tenth of that)."""
        if self.pool:
            return self.pool.pop()
        assert self.template is not None
        name = f"mmreg_test_{uuid.uuid4().hex[:12]}"
        self.create(name, template=self.template)
        return name

    def give_back(self, name: str) -> None:
        """Empty the database (after ending any session a test left) and keep it for reuse."""
        from registry.db.models import Base

        tables = ", ".join(t for t in Base.metadata.tables if t not in KEPT_TABLES)
        with self.admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": name},
            )
        engine = create_engine(self.url_of(name), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
                conn.execute(text("SELECT pg_advisory_unlock_all()"))
        finally:
            engine.dispose()
        self.pool.append(name)

    def create(self, name: str, template: str | None = None) -> str:
        with self.admin.connect() as conn:
            tmpl = f" TEMPLATE {template}" if template else ""
            conn.execute(text(f'CREATE DATABASE "{name}"{tmpl}'))
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> Iterator[PgServer | None]:
    url = request.config.getoption("--pg-url")
    server = PgServer(url)
    try:
        with server.admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        server.admin.dispose()
        reason = f"no PostgreSQL server reachable at {url}: {str(exc).splitlines()[0]}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must test PostgreSQL)")
        yield None
        return
    yield server
    for name in server.pool:
        server.drop(name)
    if server.template:
        server.drop(server.template)
    server.admin.dispose()


_SQLITE_TEMPLATE: list[str] = []


@pytest.fixture(scope="session")
def migrated_template(
    backend: str, pg_server: PgServer | None, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A database migrated to head once per session, cloned for each test.

    pytest re-runs a session fixture each time the ``backend`` parameter switches, so the
    template is made once and reused; the PostgreSQL one is dropped with the server fixture."""
    if backend == "sqlite":
        if not _SQLITE_TEMPLATE:
            path = tmp_path_factory.mktemp("template") / "template.db"
            engine = make_engine(f"sqlite:///{path}")
            prepare(engine)
            engine.dispose()
            _SQLITE_TEMPLATE.append(str(path))
        return _SQLITE_TEMPLATE[0]
    if pg_server is None:
        pytest.skip("no PostgreSQL server reachable (see --pg-url / REGISTRY_TEST_PG_URL)")
    if pg_server.template is None:
        name = f"mmreg_tmpl_{uuid.uuid4().hex[:10]}"
        engine = make_engine(pg_server.create(name))
        prepare(engine)
        engine.dispose()
        pg_server.template = name
    return pg_server.template


@pytest.fixture
def db_url(
    backend: str,
    migrated_template: str,
    pg_server: PgServer | None,
    tmp_path: Path,
) -> Iterator[str]:
    """URL of a fresh, migrated database for one test."""
    if backend == "sqlite":
        path = tmp_path / "registry.db"
        shutil.copy(migrated_template, path)
        yield f"sqlite:///{path}"
        return
    assert pg_server is not None
    name = pg_server.borrow()
    yield pg_server.url_of(name)
    pg_server.give_back(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite registry, for tests whose subject does not depend on the engine."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    prepare(engine)
    engine.dispose()
    return str(path)


@pytest.fixture
def sqlite_cli_env(sqlite_template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Like ``cli_env``, on SQLite only: for CLI behaviour that is the same on every engine."""
    path = tmp_path / "registry.db"
    shutil.copy(sqlite_template, path)
    env = {"REGISTRY_DATABASE_URL": f"sqlite:///{path}", "REGISTRY_PSEUDONYM_KEY": TEST_KEY}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def sqlite_engine(sqlite_template: str, tmp_path: Path) -> Iterator[Engine]:
    """A fresh migrated SQLite registry, for tests whose subject does not depend on the engine."""
    path = tmp_path / "registry.db"
    shutil.copy(sqlite_template, path)
    eng = make_engine(f"sqlite:///{path}")
    yield eng
    eng.dispose()


@pytest.fixture
def empty_db_url(backend: str, pg_server: PgServer | None, tmp_path: Path) -> Iterator[str]:
    """URL of an empty (unmigrated) database for one test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    if pg_server is None:
        pytest.skip("no PostgreSQL server reachable (see --pg-url / REGISTRY_TEST_PG_URL)")
    name = f"mmreg_empty_{uuid.uuid4().hex[:12]}"
    yield pg_server.create(name)
    pg_server.drop(name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def twin(
    backend: str, migrated_template: str, pg_server: PgServer | None, tmp_path: Path
) -> Iterator[Engine]:
    """A second fresh, migrated registry on the same engine (for tests comparing two ways of
    reaching the same state)."""
    if backend == "sqlite":
        path = tmp_path / "twin.db"
        shutil.copy(migrated_template, path)
        eng = make_engine(f"sqlite:///{path}")
        yield eng
        eng.dispose()
        return
    assert pg_server is not None
    name = pg_server.borrow()
    eng = make_engine(pg_server.url_of(name))
    yield eng
    eng.dispose()
    pg_server.give_back(name)


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"REGISTRY_DATABASE_URL": db_url, "REGISTRY_PSEUDONYM_KEY": TEST_KEY}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env
