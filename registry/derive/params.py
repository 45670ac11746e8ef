"""Every derivation parameter in one place, with the defaults of the project's rules
(docs/derivations.md). A derivation run stores the values it used and the rules version
(``derivation_runs.parameters``, ``derivation_runs.rules_version``).

Every "within N days" is inclusive: day N is in.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

RULES_REVISION = 2
"""The revision of the derivation rules this code implements. Raise it whenever a change to
the code changes what is derived from the same rows: patients derived under another
revision (or other parameters) are reported by ``registry doctor`` and re-derived by
``registry derive --all``."""


@dataclass(frozen=True)
class DerivationParameters:
    # non-steroid exposures starting within this many days of a regimen's start join it
    regimen_window_days: int = 30
    # same-drug rows whose gap is at most this many days merge into one exposure
    drug_gap_days: int = 90
    # a second transplant within this many days of the index one (no progression, no new
    # drug in between) is a tandem
    tandem_window_days: int = 180
    # ... or within this many days when the export says planned_tandem = yes
    planned_tandem_window_days: int = 365
    # post-transplant regimens starting within this many days of line 1's last transplant
    # are consolidation or maintenance (line 1's planned post-transplant phase)
    maintenance_start_max_days: int = 365
    # a progression within this many days of an exposure's end makes the drug refractory
    refractory_window_days: int = 60
    # consolidation: >= 2 non-steroid drugs, starting within this many days of the transplant
    consolidation_start_max_days: int = 100
    # ... and whose combination lasts at most this many days
    consolidation_max_duration_days: int = 200
    # melphalan starting within this many days before a transplant is conditioning
    conditioning_window_days: int = 14
    # progression records within this many days after an episode's first record belong to it
    relapse_episode_days: int = 30
    # drug classes that never start, extend or split a line (they still name regimens)
    non_line_classes: tuple[str, ...] = ("steroid",)
    # drug classes that are recognised but never part of a regimen (G-CSF, bisphosphonates...)
    non_regimen_classes: tuple[str, ...] = ("supportive",)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["non_line_classes"] = list(self.non_line_classes)
        d["non_regimen_classes"] = list(self.non_regimen_classes)
        return d

    def rules_version(self, vocabulary_version: str) -> str:
        """``r<revision>-<vocabulary version>-<parameters digest>``: equal versions derive
        the same lines from the same rows."""
        digest = hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:8]
        return f"r{RULES_REVISION}-{vocabulary_version}-{digest}"


DEFAULT_PARAMETERS = DerivationParameters()
