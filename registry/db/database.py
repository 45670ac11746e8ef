"""Engines, migrations and the one-writer lock.

Library code only: nothing here prints. The CLI calls these functions and renders results.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from registry.core.errors import (
    ConfigError,
    DatabaseUnavailable,
    LockHeld,
    LockLost,
    RegistryError,
    StorageError,
    UsageError,
)

LOCK_NAME = "mm-registry-load"


def is_sqlite(url_or_engine: str | Engine | Connection) -> bool:
    """Whether a URL, engine or connection is SQLite."""
    if isinstance(url_or_engine, str):
        return url_or_engine.startswith("sqlite")
    return url_or_engine.dialect.name == "sqlite"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # let SQLAlchemy, not the sqlite3 module, decide where transactions begin: with the
    # module's legacy handling, DDL (our temporary staging tables) would run outside the
    # transaction and survive a rollback
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    # write-ahead log: analysts and reports keep reading (the last committed state) while a
    # load writes; a reader never waits for the writer, nor the writer for readers
    cur.execute("PRAGMA journal_mode=WAL")
    # a page cache of 128 MiB (the default is 2 MiB): the merge inserts rows into indexes keyed by
    # pseudonyms (random order), which thrash a small cache once the registry outgrows it
    cur.execute("PRAGMA cache_size=-131072")
    # the log is reused from its start once copied into the database file, but never shrinks
    # by itself: after a first load of 20,000 patients it stayed at 415 MB on disk
    cur.execute("PRAGMA journal_size_limit=67108864")
    cur.close()


def _postgresql_session(dbapi_conn, _record) -> None:
    # no just-in-time compilation: the cohort query's estimated cost (correlated lookups per
    # patient) passes the JIT thresholds, and compiling it took 1.5 of its 2.7 s at 50,000
    # patients (1.6 s without). The registry's statements are short or index-driven; none ran
    # faster compiled.
    with dbapi_conn.cursor() as cur:
        cur.execute("SET jit = off")
    dbapi_conn.commit()


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (SQLite: pragmas, transactional DDL; PostgreSQL: pre-ping, no JIT). Connects
    to nothing; a bad URL, a missing SQLite folder or an unknown driver is a ``ConfigError`` (78)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"cannot parse database URL {url!r}") from None
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            parent = Path(db).expanduser().resolve().parent
            if not parent.exists():
                raise ConfigError(f"folder {parent} for the SQLite database does not exist")
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        return engine
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (ModuleNotFoundError, NoSuchModuleError) as exc:
        raise ConfigError(
            f"database URL {parsed.render_as_string(hide_password=True)!r} needs a driver that is not "
            f"installed or not known ({exc})",
            hint="use postgresql:// or postgresql+psycopg:// (psycopg 3) or sqlite:///FILE",
        ) from None
    if parsed.get_backend_name() == "postgresql":
        event.listen(engine, "connect", _postgresql_session)
    return engine


def require_existing_database(url: str) -> None:
    """Refuse (78) to open a SQLite registry file that does not exist: reading commands must
    not leave an empty ``registry.db`` behind."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    db = parsed.database
    if db and db != ":memory:" and not Path(db).expanduser().exists():
        raise ConfigError(
            f"no registry database at {db}",
            hint="check REGISTRY_DATABASE_URL / --database-url, or create it with `registry db upgrade`",
        )


def check_reachable(engine: Engine) -> None:
    """Connect once; ``DatabaseUnavailable`` (69) with the server's first line if that fails."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(
            f"database unreachable: {first}",
            hint="check REGISTRY_DATABASE_URL / --database-url and that the server runs",
        ) from None


# --------------------------------------------------------------------------- migrations
def migrations_dir() -> Path:
    """The top-level ``migrations/`` folder, shipped as package ``registry_migrations``."""
    return Path(str(resources.files("registry_migrations")))


def alembic_config(engine: Engine, connection: Connection | None = None) -> Config:
    """An Alembic configuration for ``engine`` and the shipped migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["engine"] = engine
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the schema to ``revision`` (Alembic). Reference data are loaded separately
    (``registry.db.setup.seed_reference_data``); ``registry.db.setup.prepare`` does both."""
    check_reachable(engine)
    _drop_views(engine)
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the schema down to ``revision`` (``base``: nothing); an unknown revision is a
    ``UsageError`` (64)."""
    check_reachable(engine)
    _known_revision(engine, revision)
    _drop_views(engine)
    command.downgrade(alembic_config(engine), revision)


def _drop_views(engine: Engine) -> None:
    """The analysts' views go before a migration changes the tables under them (PostgreSQL
    refuses to drop a table a view reads); seeding creates them again."""
    from registry.db.views import drop_views

    with engine.begin() as conn:
        drop_views(conn)


def _known_revision(engine: Engine, revision: str) -> None:
    if revision in ("base", "head") or revision.startswith(("-", "+")):
        return
    script = ScriptDirectory.from_config(alembic_config(engine))
    try:
        found = script.get_revision(revision)
    except Exception:  # alembic raises several kinds for a malformed or ambiguous id
        found = None
    if found is None:
        known = ", ".join(r.revision for r in script.walk_revisions())
        raise UsageError(f"no migration revision {revision!r}", hint=f"known revisions: {known}, base")


def history(engine: Engine) -> list[tuple[str, str | None, str]]:
    """(revision, down revision, message) of every migration, newest first."""
    script = ScriptDirectory.from_config(alembic_config(engine))
    return [(r.revision, r.down_revision, (r.doc or "").strip()) for r in script.walk_revisions()]  # type: ignore[misc]


def stamp(engine: Engine, revision: str) -> None:
    """Record ``revision`` as the database's state without running migrations."""
    check_reachable(engine)
    _known_revision(engine, revision)
    command.stamp(alembic_config(engine), revision)


def upgrade_sql(engine: Engine, revision: str = "head", start: str | None = None) -> str:
    """The SQL that ``upgrade`` would run, for a DBA to review or apply (Alembic offline mode)."""
    import io

    buffer = io.StringIO()
    cfg = alembic_config(engine)
    cfg.output_buffer = buffer
    _known_revision(engine, revision)
    command.upgrade(cfg, f"{start}:{revision}" if start else revision, sql=True)
    return buffer.getvalue()


@dataclass(frozen=True)
class MigrationState:
    """The database's migration revision and the code's head."""

    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def migration_state(engine: Engine) -> MigrationState:
    """The database's revision and the code's head."""
    check_reachable(engine)
    script = ScriptDirectory.from_config(alembic_config(engine))
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    head = script.get_current_head()
    assert head is not None
    return MigrationState(current=current, head=head)


def require_current_schema(engine: Engine) -> None:
    """``ConfigError`` (78) unless the schema is at head."""
    state = migration_state(engine)
    if not state.up_to_date:
        raise ConfigError(
            f"the database schema is at {state.current or 'nothing'}, not {state.head}",
            hint="run `registry db upgrade` first",
        )


# --------------------------------------------------------------------------- the load lock
@contextlib.contextmanager
def writer_lock(engine: Engine) -> Iterator[None]:
    """Only one load at a time per database.

    PostgreSQL: a session advisory lock on one dedicated connection (released if the holder
    dies; unlocked in ``finally``). SQLite: ``flock`` on a sidecar ``<db>.lock`` file (released
    by the kernel when the holder dies).
    """
    if is_sqlite(engine):
        db = engine.url.database or ""
        if not db or db == ":memory:":
            yield
            return
        lock_path = Path(db).expanduser().resolve().with_name(Path(db).name + ".lock")
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockHeld(
                    "another run holds the lock on this registry",
                    hint="wait for it to finish; `registry etl runs` shows what is running",
                ) from None
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return

    key = zlib.crc32(LOCK_NAME.encode())
    conn = engine.connect()
    try:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        conn.commit()
        if not got:
            raise LockHeld(
                "another run holds the lock on this registry",
                hint="wait for it to finish; `registry etl runs` shows what is running",
            )
        _HOLDERS[id(engine)] = int(pid or 0)
        try:
            yield
        finally:
            _HOLDERS.pop(id(engine), None)
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
            except DBAPIError:
                pass  # the lock's connection is gone, and the lock with it: nothing to undo
    finally:
        with contextlib.suppress(DBAPIError):
            conn.close()


# the backend holding the writer lock, per engine (PostgreSQL): checked before a run commits
_HOLDERS: dict[int, int] = {}
WORK_LOCK_NAME = "mm-registry-work"


def lock_work(conn: Connection) -> None:
    """PostgreSQL: serialise the work itself, not only the runs: a transaction-scoped advisory
    lock taken first in every writing transaction (a load, a derivation). It dies with the
    transaction, so a second loader that got past a lost session lock waits here until the
    first run has committed or rolled back, then sees what it committed."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(WORK_LOCK_NAME.encode())})


def check_writer_lock(conn: Connection) -> None:
    """PostgreSQL: before a run commits, check that its writer lock is still held (its idle
    connection can end: ``idle_session_timeout``, a terminated backend, a network cut). Lost, the
    run is refused (75) and its transaction rolled back: nothing of it is committed."""
    if conn.dialect.name != "postgresql":
        return
    pid = _HOLDERS.get(id(conn.engine))
    if pid is None:
        return  # not under the writer lock (a test's direct call)
    held = conn.execute(
        text(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = :pid "
            "AND objid = CAST(:k AS oid) AND objsubid = 1"
        ),
        {"pid": pid, "k": zlib.crc32(LOCK_NAME.encode())},
    ).first()
    if held is None:
        raise LockLost(
            "the registry's writer lock was lost during the run (its connection ended): nothing of "
            "the run was committed",
            hint="run again; check idle_session_timeout and the network between the registry and the server",
        )


LOST = (
    "server closed the connection",
    "terminating connection",
    "connection refused",
    "connection is lost",
    "could not receive data",
    "could not send data",
    "connection to server",
    "the connection is closed",
)


def lost_or_full(exc: OperationalError, committed: str | None = None) -> RegistryError | None:
    """The user-facing error for a database failure mid-run: a lost server connection (69) or a
    full disk under SQLite (74), else None. The failing transaction is rolled back either way;
    ``committed`` says what an earlier transaction of the run had committed already (e.g. "run 4's
    load was committed, its derivation was not"), so the message never claims nothing was."""
    message = str(exc.orig if exc.orig is not None else exc).lower()
    if "database or disk is full" in message or "disk i/o error" in message:
        text_ = (
            f"the registry's disk is full: {committed}"
            if committed
            else "the registry's disk is full: the run was rolled back and the registry file is as it was"
        )
        return StorageError(text_, hint="free space where the registry lives, then run again")
    if exc.connection_invalidated or any(m in message for m in LOST):
        first = message.strip().splitlines()[0] if message.strip() else "connection lost"
        what = committed or "nothing of the run was committed"
        return DatabaseUnavailable(
            f"the database connection was lost during the run ({first}); {what}",
            hint="check the server, then run again (the run is repeatable)",
        )
    return None
