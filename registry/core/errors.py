"""One exception root for the whole project; the CLI translates it once into a message and an
exit code (sysexits-style). The exit-code table of docs/operations.md is generated from
``EXIT_CODES`` below (``python -m registry.cli.docgen``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 64  # EX_USAGE
EXIT_DATA = 65  # EX_DATAERR
EXIT_NO_INPUT = 66  # EX_NOINPUT
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE
EXIT_SOFTWARE = 70  # EX_SOFTWARE
EXIT_CANT_CREATE = 73  # EX_CANTCREAT
EXIT_IOERR = 74  # EX_IOERR
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL
EXIT_CONFIG = 78  # EX_CONFIG
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C

# code: (meaning, what to do) — the documented contract
EXIT_CODES: dict[int, tuple[str, str]] = {
    EXIT_OK: ("success (quarantined rows are not a failure)", "read the warnings; `registry etl quarantine`"),
    EXIT_USAGE: (
        "usage error: bad option or combination, unknown cohort or revision, a biased comparison asked for",
        "see `registry COMMAND --help`",
    ),
    EXIT_DATA: (
        "bundle refused (structure, manifest, older than the last bundle, a file mostly quarantined); "
        "a report refused (patients await derivation, --as-of outside the data, an empty cohort or "
        "landmark set, a set below the release threshold)",
        "fix the export (`--force` for an intentional re-load of an older bundle); for a report, "
        "follow the hint it prints",
    ),
    EXIT_NO_INPUT: ("the bundle path does not exist", "check the path"),
    EXIT_UNAVAILABLE: (
        "database unreachable, or its connection lost during a run (nothing of the run committed)",
        "check `REGISTRY_DATABASE_URL` and the server, then run again",
    ),
    EXIT_SOFTWARE: ("internal error: a bug (the traceback is printed)", "report it with the traceback"),
    EXIT_CANT_CREATE: ("an output file cannot be written (missing folder, no permission)", "check `--out`"),
    EXIT_IOERR: (
        "the registry's disk is full or failing (SQLite); nothing of the run was committed",
        "free space on the registry's disk, then run again",
    ),
    EXIT_TEMPFAIL: ("another run holds the lock", "retry later (cron: the next run)"),
    EXIT_INTERRUPTED: (
        "interrupted (Ctrl-C): the one line says what was kept (nothing, or a committed load whose "
        "derivation is pending)",
        "run the command again; `registry derive` finishes a pending derivation",
    ),
    EXIT_CONFIG: (
        "configuration error: bad URL or driver, no pseudonym key, unreadable TOML, no registry "
        "database, schema not migrated, a broken cohort definition, patients derived under older rules",
        "fix the configuration; `registry doctor`",
    ),
}


class RegistryError(Exception):
    """Base of every error a user can cause. ``hint`` says what to do next."""

    exit_code = EXIT_SOFTWARE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(RegistryError):
    """A command line that cannot be carried out as given (a bad combination of options)."""

    exit_code = EXIT_USAGE


class OutputError(RegistryError):
    """An output file cannot be written."""

    exit_code = EXIT_CANT_CREATE


class ConfigError(RegistryError):
    """Bad configuration (78): URL, driver, key, TOML, schema, definitions."""

    exit_code = EXIT_CONFIG


class DefinitionError(ConfigError):
    """A cohort definition that cannot be compiled or run; the message names the step."""


class DatabaseUnavailable(RegistryError):
    """The database cannot be reached (69)."""

    exit_code = EXIT_UNAVAILABLE


class StorageError(RegistryError):
    """The registry's storage refused a write (74): a full disk; the run was rolled back."""

    exit_code = EXIT_IOERR


class LockHeld(RegistryError):
    """Another run holds the lock (75): try again later."""

    exit_code = EXIT_TEMPFAIL


class LockLost(RegistryError):
    """The run's writer lock was lost before it committed (75): it rolled back; run again."""

    exit_code = EXIT_TEMPFAIL


class NoInput(RegistryError):
    """An input path does not exist (66)."""

    exit_code = EXIT_NO_INPUT


@dataclass
class Problem:
    """One structural problem of a bundle: which file, what is wrong."""

    file: str
    problem: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}"


class BundleRefused(RegistryError):
    """The bundle as a whole cannot be loaded; nothing was changed in the registry."""

    exit_code = EXIT_DATA

    def __init__(self, problems: list[Problem], *, hint: str | None = None) -> None:
        self.problems = problems
        text = "; ".join(str(p) for p in problems)
        super().__init__(f"bundle refused: {text}", hint=hint)


class StudyError(RegistryError):
    """A study or cohort request that cannot be answered as asked (e.g. a biased comparison)."""

    exit_code = EXIT_USAGE


class ReportRefused(RegistryError):
    """A report that would describe the wrong state (65): patients awaiting derivation, a data
    cutoff outside the data, an empty cohort or landmark set, a set below the release threshold."""

    exit_code = EXIT_DATA


class NotFound(RegistryError):
    """An unknown name on the command line: cohort, patient (64)."""

    exit_code = EXIT_USAGE


class Interrupted(RegistryError):
    """The user interrupted a run (Ctrl-C); the message says what, if anything, was kept."""

    exit_code = EXIT_INTERRUPTED
