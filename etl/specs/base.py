"""What a ``FileSpec`` is: everything the ETL knows about one input file — its columns (the
contract), its own row rules, its target model and row mapping, its pseudonym namespace,
whether it may be absent, and how it feeds the per-patient facts other files are checked
against. Validate, transform, load and the docs loop over the specs; none of them names a
file."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from registry.contract import InputFile
from registry.contract.rules import RuleCode

if TYPE_CHECKING:
    from etl.transform import Pseudonymiser
    from etl.validate import PatientFacts, ReasonLog
    from registry.db.vocabulary import VocabularyMap

"""The file every other file's rows belong to (through ``patient_id``)."""


@dataclass
class RuleContext:
    """One chunk as the file's own rules see it: typed values ``t``, raw strings ``raw`` (for
    the reasons), the reason log and, for files under a patient, that patient's dates aligned
    with the chunk's rows (empty frames for ``patients.csv`` itself)."""

    t: pd.DataFrame
    raw: pd.DataFrame
    log: ReasonLog
    diagnosis: pd.Series | None = None
    death: pd.Series | None = None
    last_contact: pd.Series | None = None

    def check(self, mask: pd.Series, column: str, code: RuleCode) -> None:
        self.log.add(mask, column, self.raw[column], code)

    def not_after_end_of_follow_up(self, column: str) -> None:
        """Neither after the patient's death nor after the last contact (an empty date, such
        as an ongoing treatment's end, never compares true)."""
        values = self.t[column]
        self.check(values > self.death, column, RuleCode.AFTER_DEATH)
        self.check(values > self.last_contact, column, RuleCode.AFTER_LAST_CONTACT)


@dataclass
class RowContext:
    """What a file's row mapping may use: the pseudonymiser, the drug vocabulary, the site and
    the counter of unmapped drug names."""

    pseudo: Pseudonymiser
    vocab: VocabularyMap
    site_id: str
    unmapped: Counter[str] = field(default_factory=Counter)


def no_rules(_: RuleContext) -> None:
    """A file without rules of its own (beyond the contract and the shared date rules)."""


@dataclass(frozen=True)
class FileSpec(InputFile):
    """One input file: its contract entry (``InputFile``: name, source id, pseudonym namespace,
    columns, whether it may be absent) plus how the ETL handles it."""

    model: type = object  # the target table's model (registry.db.models)
    key: str = ""  # the target's primary key (a pseudonym)
    rules: Callable[[RuleContext], None] = no_rules
    to_rows: Callable[[pd.DataFrame, RowContext], pd.DataFrame] | None = None
    # per-patient facts: called with (facts, valid rows, their patient pseudonyms, their
    # source patient ids) for each chunk, then with (facts, duplicated keys) at the end
    on_valid: Callable[[PatientFacts, pd.DataFrame, pd.Series, Any], None] | None = None
    on_done: Callable[[PatientFacts, set[str]], None] | None = None

    @classmethod
    def of(cls, entry: InputFile, **how: Any) -> FileSpec:
        """The spec of the contract's file ``entry`` (everything the contract says of it) with
        how the ETL handles it."""
        return cls(**{f.name: getattr(entry, f.name) for f in dataclasses.fields(InputFile)}, **how)

    @property
    def target(self) -> str:
        return str(self.model.__tablename__)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- row mapping helpers
def iso(series: pd.Series) -> pd.Series:
    """Dates as ISO text (``YYYY-MM-DD``), None for nulls (numpy's formatting of day
    precision: a third faster than ``strftime``)."""
    days = series.to_numpy(dtype="datetime64[D]")
    out = np.datetime_as_string(days, unit="D").astype(object)
    out[np.isnat(days)] = None
    return pd.Series(out, index=series.index, dtype=object)


def yes_no(series: pd.Series) -> pd.Series:
    """``yes``/``no`` as booleans, None for nulls."""
    return series.map({"yes": True, "no": False}).astype(object).where(series.notna(), None)


def nullable(series: pd.Series) -> pd.Series:
    """Values as objects, None for nulls."""
    return series.astype(object).where(series.notna(), None)
