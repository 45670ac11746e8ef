"""``registry doctor``: what configuration is in force and whether the database is usable."""

from __future__ import annotations

from dataclasses import dataclass, field

from registry import __version__
from registry.core.config import ENV_PSEUDONYM_KEY, Settings
from registry.core.errors import EXIT_OK, RegistryError


@dataclass
class DoctorReport:
    lines: list[tuple[str, str, bool]] = field(default_factory=list)
    exit_code: int = EXIT_OK

    @property
    def healthy(self) -> bool:
        return all(ok for _, _, ok in self.lines)


def diagnose(settings: Settings) -> DoctorReport:
    from registry.db.database import make_engine, migration_state
    from registry.derive.run import derivation_status

    report = DoctorReport()
    report.lines.append(("version", __version__, True))
    report.lines.append(("config file", settings.config_file or "none", True))
    report.lines.append(
        ("database url", f"{settings.redacted_url} (from {settings.database_url_source})", True)
    )
    if settings.pseudonym_key:
        report.lines.append(("pseudonym key", f"set (from {settings.pseudonym_key_source})", True))
    else:
        report.lines.append(("pseudonym key", f"NOT SET: set {ENV_PSEUDONYM_KEY}", False))
    try:
        engine = make_engine(settings.database_url)
        report.lines.append(("engine", engine.dialect.name, True))
        try:
            state = migration_state(engine)
            status = None
            if state.up_to_date:
                with engine.connect() as conn:
                    status = derivation_status(conn)
        finally:
            engine.dispose()
        report.lines.append(("reachable", "yes", True))
        if state.up_to_date:
            report.lines.append(("migrations", f"up to date ({state.head})", True))
        else:
            report.lines.append(
                (
                    "migrations",
                    f"at {state.current or 'none'}, head is {state.head}: run `registry db upgrade`",
                    False,
                )
            )
        if status is not None:
            message = status.message
            if message:
                report.lines.append(("derivations", message, False))
            else:
                report.lines.append(
                    (
                        "derivations",
                        f"{status.derived} patients, all under rules {status.rules_version}",
                        True,
                    )
                )
    except RegistryError as exc:
        report.lines.append(("reachable", exc.message, False))
        report.exit_code = exc.exit_code
    if not report.healthy and report.exit_code == EXIT_OK:
        report.exit_code = 78
    return report
