"""``registry doctor``: what configuration is in force and whether the registry is usable:
reachable, migrated, every patient derived under the current rules, and how the last run
ended. Opens nothing it would have to create (a missing SQLite file is reported, not made)."""

from __future__ import annotations

import hmac
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from registry import __version__
from registry.core.config import ENV_PSEUDONYM_KEY, Settings
from registry.core.enums import RunStatus
from registry.core.errors import EXIT_CONFIG, EXIT_OK, RegistryError


@dataclass
class DoctorReport:
    """One line per check: (name, value, ok). ``exit_code`` is that of the first failure."""

    lines: list[tuple[str, str, bool]] = field(default_factory=list)
    exit_code: int = EXIT_OK

    @property
    def healthy(self) -> bool:
        return all(ok for _, _, ok in self.lines)

    def add(self, name: str, value: str, ok: bool = True, exit_code: int = EXIT_CONFIG) -> None:
        self.lines.append((name, value, ok))
        if not ok and self.exit_code == EXIT_OK:
            self.exit_code = exit_code

    def to_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "exit_code": self.exit_code,
            "checks": [{"check": n, "value": v, "ok": ok} for n, v, ok in self.lines],
        }


def diagnose(settings: Settings) -> DoctorReport:
    """Run every check; never raises for a user error (each becomes a failed line).

    Parameters
    ----------
    settings
        The configuration in force (flags, environment, file, defaults).

    Returns
    -------
    DoctorReport
        The checks, and the exit code of the first that failed (0 when all passed).
    """
    from registry.db.database import make_engine, migration_state, require_existing_database
    from registry.db.keyprint import fingerprint, recorded_fingerprint
    from registry.derive.run import derivation_status

    report = DoctorReport()
    report.add("version", __version__)
    report.add("config file", settings.config_file or "none")
    report.add("database url", f"{settings.redacted_url} (from {settings.database_url_source})")
    if settings.pseudonym_key:
        report.add("pseudonym key", f"set (from {settings.pseudonym_key_source})")
    else:
        report.add("pseudonym key", f"NOT SET: set {ENV_PSEUDONYM_KEY}", ok=False)
    try:
        engine = make_engine(settings.database_url)
    except RegistryError as exc:
        report.add("engine", exc.message, ok=False, exit_code=exc.exit_code)
        return report
    report.add("engine", engine.dialect.name)
    if engine.dialect.name == "sqlite" and engine.url.database and os.path.exists(engine.url.database):
        mode = os.stat(engine.url.database).st_mode
        if mode & 0o077:
            # a warning, not a failure: the registry works, but other accounts can read it
            shown = stat.filemode(mode)
            report.add("file mode", f"WARNING: {shown}: readable beyond its owner; chmod 600 it")
        else:
            report.add("file mode", f"{stat.filemode(mode)} (private)")
    try:
        require_existing_database(settings.database_url)
        state = migration_state(engine)
        report.add("reachable", "yes")
        if not state.up_to_date:
            report.add(
                "migrations",
                f"at {state.current or 'none'}, head is {state.head}: run `registry db upgrade`",
                ok=False,
            )
            return report
        report.add("migrations", f"up to date ({state.head})")
        with engine.connect() as conn:
            status = derivation_status(conn)
            last = _last_run(conn)
            recorded = recorded_fingerprint(conn)
        if settings.pseudonym_key and recorded is not None:
            if hmac.compare_digest(recorded, fingerprint(settings.pseudonym_key.encode("utf-8"))):
                report.add("key fingerprint", "matches the key this registry was loaded with")
            else:
                report.add(
                    "key fingerprint",
                    "DIFFERENT from the key this registry was loaded with: loads are refused",
                    ok=False,
                )
        elif recorded is None:
            report.add("key fingerprint", "none yet (recorded by the first load)")
        if status.message:
            report.add("derivations", status.message, ok=False)
        else:
            report.add("derivations", f"{status.derived} patients, all under rules {status.rules_version}")
        if last is not None:
            report.add("last run", last[0], ok=last[1])
        else:
            report.add("last run", "none yet")
    except RegistryError as exc:
        report.add("reachable", exc.message, ok=False, exit_code=exc.exit_code)
    finally:
        engine.dispose()
    return report


def _last_run(conn: Any) -> tuple[str, bool] | None:
    """How the latest load ended; a failed or killed one is a problem to look at."""
    from registry.db.models import EtlRun

    row = conn.execute(
        select(EtlRun.run_id, EtlRun.status, EtlRun.site_code, EtlRun.started_at, EtlRun.message)
        .order_by(EtlRun.run_id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    started = row.started_at.isoformat(timespec="seconds") if row.started_at else "?"
    text = f"run {row.run_id} ({row.site_code or '-'}, started {started}): {row.status}"
    if row.status in (RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.KILLED, RunStatus.REFUSED):
        return f"{text} — {row.message or ''}; see `registry etl runs`", False
    return text, True
