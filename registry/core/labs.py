"""The laboratory tests the registry knows: their codes and accepted synonyms, the canonical
unit of each and the conversions into it, the plausible ranges, and how a delivered value is
read (a number; ``positive`` / ``negative`` for immunofixation; ``<x`` and ``not detected``,
which mean 0 for an M-protein and keep their raw text).

One table (``TESTS``) that the input contract, the derivation and the docs all read."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LabTest:
    code: str
    label: str
    unit: str  # the canonical unit
    # other units accepted, with the factor that converts a value into the canonical unit
    conversions: dict[str, float] = field(default_factory=dict)
    maximum: float | None = None  # above this a value is implausible
    qualitative: bool = False  # immunofixation: positive or negative
    below_limit_is_zero: bool = False  # "<x" and "not detected" mean 0 (M-protein)
    synonyms: tuple[str, ...] = ()


TESTS: tuple[LabTest, ...] = (
    LabTest(
        "serum_m_protein",
        "Serum M-protein",
        "g/dL",
        {"g/l": 0.1, "mg/dl": 0.001},
        maximum=20.0,
        below_limit_is_zero=True,
        synonyms=("spep m-spike", "spep", "m-spike", "serum m-spike", "serum paraprotein", "paraprotein"),
    ),
    LabTest(
        "urine_m_protein",
        "Urine M-protein (24-hour)",
        "mg/24h",
        {"g/24h": 1000.0},
        maximum=50_000.0,
        below_limit_is_zero=True,
        synonyms=("upep 24h", "upep", "urine m-spike", "bence jones 24h", "urine paraprotein"),
    ),
    LabTest(
        "flc_kappa",
        "Free light chain kappa",
        "mg/L",
        {"mg/dl": 10.0},
        maximum=100_000.0,
        synonyms=("kappa flc", "free kappa", "kappa free light chain", "sflc kappa"),
    ),
    LabTest(
        "flc_lambda",
        "Free light chain lambda",
        "mg/L",
        {"mg/dl": 10.0},
        maximum=100_000.0,
        synonyms=("lambda flc", "free lambda", "lambda free light chain", "sflc lambda"),
    ),
    LabTest(
        "serum_ife",
        "Serum immunofixation",
        "",
        qualitative=True,
        synonyms=("ife serum", "serum ife", "immunofixation serum", "sife"),
    ),
    LabTest(
        "urine_ife",
        "Urine immunofixation",
        "",
        qualitative=True,
        synonyms=("ife urine", "urine ife", "immunofixation urine", "uife"),
    ),
    LabTest(
        "bm_plasma_cells",
        "Bone-marrow plasma cells",
        "%",
        maximum=100.0,
        synonyms=("bone marrow plasma cells", "bmpc", "marrow plasma cells", "bm pc"),
    ),
    LabTest("calcium", "Calcium", "mg/dL", {"mmol/l": 4.008}, synonyms=("ca", "serum calcium")),
    LabTest(
        "creatinine",
        "Creatinine",
        "mg/dL",
        {"µmol/l": 1 / 88.4, "umol/l": 1 / 88.4},
        synonyms=("crea", "serum creatinine"),
    ),
    LabTest("hemoglobin", "Hemoglobin", "g/dL", {"g/l": 0.1}, synonyms=("hb", "haemoglobin", "hgb")),
    LabTest("ldh", "LDH", "U/L", synonyms=("lactate dehydrogenase",)),
    LabTest("beta2_microglobulin", "Beta-2 microglobulin", "mg/L", synonyms=("b2m", "beta-2 microglobulin")),
    LabTest("albumin", "Albumin", "g/dL", {"g/l": 0.1}, synonyms=("alb", "serum albumin")),
)
BY_CODE = {t.code: t for t in TESTS}
# every accepted name of a test, lower-case, with spaces or with underscores -> its code (the
# input contract's allowed values, and what ``code_of`` reads)
NAMES = {
    spelling: t.code
    for t in TESTS
    for name in (t.code, *t.synonyms)
    for spelling in dict.fromkeys(
        (name.lower(), name.lower().replace("_", " "), name.lower().replace(" ", "_"))
    )
}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower().replace("_", " "))


def code_of(name: str) -> str | None:
    """The test a delivered name means (its code or a documented synonym, any case), or None."""
    return NAMES.get(_norm(name))


@dataclass(frozen=True)
class LabValue:
    """A delivered value read: ``value`` in the canonical unit (0 for a value below the limit of
    an M-protein), ``result`` for immunofixation, ``problem`` when the row cannot be used."""

    value: float | None = None
    result: str | None = None  # positive | negative
    problem: str | None = None


BELOW = re.compile(r"^<\s*(\d+(?:[.,]\d+)?)$")
NOT_DETECTED = {"not detected", "none detected", "nd", "undetectable", "absent"}


@functools.lru_cache(maxsize=1 << 16)  # the input's rules and its row mapping read each value
def read_value(code: str, raw: str, unit: str) -> LabValue:
    """Read one delivered value of test ``code`` in ``unit``; see the module's notes."""
    test = BY_CODE[code]
    text = raw.strip().lower()
    if test.qualitative:
        if text in ("positive", "pos", "+"):
            return LabValue(result="positive")
        if text in ("negative", "neg", "-"):
            return LabValue(result="negative")
        return LabValue(problem=f"{test.label} is positive or negative, not {raw!r}")
    if test.below_limit_is_zero and (text in NOT_DETECTED or BELOW.match(text)):
        return LabValue(value=0.0)
    try:
        number = float(text.replace(",", "."))
    except ValueError:
        return LabValue(problem=f"{test.label}: {raw!r} is not a number")
    if not math.isfinite(number) or number < 0:
        return LabValue(problem=f"{test.label}: {raw!r} is not a non-negative number")
    u = unit.strip().lower()
    if u == test.unit.lower():
        factor = 1.0
    elif u in test.conversions:
        factor = test.conversions[u]
    else:
        known = ", ".join([test.unit, *test.conversions]) or "none"
        return LabValue(problem=f"{test.label}: unit {unit!r} unknown (known: {known})")
    value = number * factor
    if test.maximum is not None and value > test.maximum:
        return LabValue(
            problem=f"{test.label}: {value:g} {test.unit} is implausible (above {test.maximum:g})"
        )
    return LabValue(value=value)
