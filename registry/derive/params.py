"""Every derivation parameter in one place, with the spec's defaults. A derivation run stores
the values it used (``derivation_runs.parameters``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class DerivationParameters:
    regimen_window_days: int = 30
    drug_gap_days: int = 90
    tandem_window_days: int = 180
    maintenance_start_max_days: int = 365
    refractory_window_days: int = 60
    # consolidation: >= 2 non-steroid drugs, starting within this many days of the transplant
    consolidation_start_max_days: int = 100
    # ... and lasting at most this many days
    consolidation_max_duration_days: int = 200
    # melphalan starting within this many days before a transplant is conditioning
    conditioning_window_days: int = 7
    # progression records closer than this to the previous one form one relapse episode
    relapse_episode_days: int = 30
    # drug classes that never start, extend or split a line (they still name regimens)
    non_line_classes: tuple[str, ...] = ("steroid",)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["non_line_classes"] = list(self.non_line_classes)
        return d


DEFAULT_PARAMETERS = DerivationParameters()
