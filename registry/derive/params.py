"""Every derivation parameter in one place, with the defaults of the project's rules
(docs/derivations.md). A derivation run stores the values it used and the rules version
(``derivation_runs.parameters``, ``derivation_runs.rules_version``).

Every "within N days" is inclusive: day N is in.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from registry.derive.response import ResponseParams

RULES_REVISION = 3
"""The revision of the derivation rules this code implements. Raise it whenever a change to
the code changes what is derived from the same rows: patients derived under another
revision (or other parameters) are reported by ``registry doctor`` and re-derived by
``registry derive --all``."""


def _p(default: int, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class DerivationParameters:
    """Every number of the derivation rules; docs/derivations.md's parameter table is generated
    from these fields and their ``doc``."""

    regimen_window_days: int = _p(
        30, "non-steroid exposures starting within this of a regimen's start join it"
    )
    drug_gap_days: int = _p(
        90,
        "same-drug rows with a gap of at most this merge; a line whose drugs all stopped longer ago ends",
    )
    tandem_window_days: int = _p(180, "a second transplant within this of the index one can be a tandem")
    planned_tandem_window_days: int = _p(
        365, "... or within this when the export says `planned_tandem = yes`"
    )
    maintenance_start_max_days: int = _p(
        365,
        "post-transplant regimens starting within this of line 1's last transplant are line 1's "
        "consolidation or maintenance",
    )
    refractory_window_days: int = _p(
        60,
        "a progression while a drug runs or within this of its end makes the patient refractory to it",
    )
    consolidation_start_max_days: int = _p(
        100, "a regimen of two or more non-steroid drugs starting within this of the transplant ..."
    )
    consolidation_max_duration_days: int = _p(
        200, "... whose combination lasts at most this is consolidation"
    )
    conditioning_window_days: int = _p(
        14, "melphalan starting within this before a transplant is conditioning"
    )
    relapse_episode_days: int = _p(
        30, "progression records within this after an episode's first record belong to that episode"
    )
    progression_lag_days: int = _p(
        30,
        "a salvage regimen starting up to this before a progression episode's first record starts the "
        "next line (progression recorded later, r3)",
    )
    non_line_classes: tuple[str, ...] = field(
        default=("steroid",),
        metadata={
            "doc": "classes that never start, extend or split a line (they still appear in regimen names)"
        },
    )
    non_regimen_classes: tuple[str, ...] = field(
        default=("supportive",),
        metadata={"doc": "classes that are recognised but never part of a regimen"},
    )
    progression_sources: tuple[str, ...] = field(
        default=("event", "stop_reason", "labs"),
        metadata={
            "doc": "what documents a progression: disease events, treatment stop reasons, confirmed PD "
            "derived from the laboratory series (a study may use recorded progressions only)"
        },
    )
    response: ResponseParams = field(
        default=ResponseParams(), metadata={"doc": "the response and progression rules' numbers (below)"}
    )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["non_line_classes"] = list(self.non_line_classes)
        d["non_regimen_classes"] = list(self.non_regimen_classes)
        d["progression_sources"] = list(self.progression_sources)
        return d

    def rules_version(self, vocabulary_version: str) -> str:
        """``r<revision>-<vocabulary version>-<parameters digest>``: equal versions derive
        the same lines from the same rows."""
        digest = hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:8]
        return f"r{RULES_REVISION}-{vocabulary_version}-{digest}"


DEFAULT_PARAMETERS = DerivationParameters()


def parameter_table() -> list[tuple[str, str, str]]:
    """(name, default, meaning) of every parameter, for the generated docs."""
    out = []
    for f in fields(DerivationParameters):
        default = f.default
        if isinstance(default, ResponseParams):
            continue
        text = ", ".join(default) if isinstance(default, tuple) else str(default)
        out.append((f.name, text, f.metadata["doc"]))
    for f in fields(ResponseParams):
        out.append((f"response.{f.name}", f"{f.default:g}", f.metadata["doc"]))
    return out
