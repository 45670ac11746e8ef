"""One exception root for the whole project; the CLI translates it once into a message and an
exit code (sysexits-style, see docs/operations.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Exit codes (documented in docs/operations.md)
EXIT_OK = 0
EXIT_USAGE = 64  # EX_USAGE: bad command line
EXIT_DATA = 65  # EX_DATAERR: bundle refused (structure, manifest, stale export)
EXIT_NO_INPUT = 66  # EX_NOINPUT: bundle path does not exist
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: database unreachable
EXIT_SOFTWARE = 70  # EX_SOFTWARE: internal error (a bug)
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: another run holds the lock; try again later
EXIT_CONFIG = 78  # EX_CONFIG: bad configuration


class RegistryError(Exception):
    """Base of every error a user can cause. ``hint`` says what to do next."""

    exit_code = EXIT_SOFTWARE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(RegistryError):
    exit_code = EXIT_CONFIG


class DatabaseUnavailable(RegistryError):
    exit_code = EXIT_UNAVAILABLE


class LockHeld(RegistryError):
    exit_code = EXIT_TEMPFAIL


class NoInput(RegistryError):
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


class NotFound(RegistryError):
    exit_code = EXIT_USAGE
