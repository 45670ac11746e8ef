"""The coded values the registry writes, as ``StrEnum``: each member is its stored string, so
rows, JSON and SQL see plain text while the code names every allowed value once."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """How an ETL run ended (``etl_runs.status``)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    UNCHANGED = "unchanged"  # the same bundle was already loaded
    VALIDATED = "validated"  # a dry run: nothing written
    REFUSED = "refused"  # a structural problem: nothing changed
    FAILED = "failed"  # an error: nothing changed
    INTERRUPTED = "interrupted"  # Ctrl-C during the load: nothing changed
    KILLED = "killed"  # the process died; marked by the next run


class ExposureRole(StrEnum):
    """What an exposure is part of (``exposures.role``)."""

    REGIMEN = "regimen"
    CONDITIONING = "conditioning"


class Phase(StrEnum):
    """A regimen's phase (``regimens.phase``)."""

    INDUCTION = "induction"
    MOBILISATION = "mobilisation"
    CONSOLIDATION = "consolidation"
    MAINTENANCE = "maintenance"
    SALVAGE = "salvage"


class StartRule(StrEnum):
    """Why a line of therapy started (``lines_of_therapy.start_rule``)."""

    FIRST = "first"
    PROGRESSION = "progression"
    GAP = "gap"
    NEW_DRUG = "new_drug"
    TRANSPLANT = "transplant"
    # (r3) a regimen begun up to progression_lag_days before the progression was recorded
    PROGRESSION_RECORDED_LATER = "progression_recorded_later"


class LineEnd(StrEnum):
    """End reasons of a line besides its last exposure's stop reason."""

    PROGRESSION = "progression"
    NEXT_LINE = "next_line"
    ONGOING = "ongoing"


class TransplantRole(StrEnum):
    """A transplant's derived role (``transplant_roles.role``)."""

    INDEX = "index"
    TANDEM = "tandem"
    SALVAGE = "salvage"
    ADDITIONAL = "additional"
    ALLOGENEIC = "allogeneic"


class ProgressionSource(StrEnum):
    """What documents a progression (``relapses.source``)."""

    EVENT = "event"
    STOP_REASON = "stop_reason"
    LABS = "labs"  # a confirmed PD derived from the laboratory series
