"""Load and check declarative cohort definitions."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from registry.core.errors import DefinitionError, NotFound, StudyError

ORIGINS = ("l2_start", "index_transplant_date", "l1_start", "l1_response")
EVENTS = ("death", "relapse", "progression_after_l2", "next_treatment", "progression_after_response")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_DRUG = re.compile(r"^[a-z][a-z0-9 -]*$")  # becomes part of column names (spaces, hyphens: _)


@dataclass(frozen=True)
class Step:
    """An inclusion step: SQL condition over the base columns, and why patients fail it."""

    label: str
    condition: str
    reason: str


@dataclass(frozen=True)
class Group:
    """A study group: its name, label and SQL condition."""

    name: str
    label: str
    condition: str


@dataclass(frozen=True)
class Endpoint:
    """A time-to-event endpoint: origin column and the events that end it."""

    name: str
    label: str
    origin: str
    events: tuple[str, ...]
    # competing events (a competing-risks endpoint): its table has ``<name>_status`` = 1 for the
    # events, 2 for a competing event first, 0 censored, instead of ``<name>_event``
    competing: tuple[str, ...] = ()

    @property
    def origin_is_baseline(self) -> bool:
        return self.origin == "l2_start"

    @property
    def outcome_column(self) -> str:
        """``<name>_status`` for a competing-risks endpoint, ``<name>_event`` otherwise."""
        return f"{self.name}_status" if self.competing else f"{self.name}_event"


@dataclass(frozen=True)
class Covariate:
    """An adjustment term of the Cox model: a numeric column, or a categorical one with its
    reference level."""

    column: str
    label: str
    kind: str = "categorical"  # categorical | numeric
    reference: str | None = None


@dataclass(frozen=True)
class Analysis:
    """How a study is analysed and drawn: the ``[analysis]`` table of a definition."""

    reference_group: str
    covariates: tuple[Covariate, ...] = ()
    rate_months: tuple[int, ...] = (12, 24, 60)
    at_risk_months: tuple[int, ...] = (0, 12, 24, 36, 48, 60)
    baseline_heading: str = "Baseline"
    # the rows of Table 1, in order: categorical (n, %) or continuous (median, IQR)
    table1: tuple[Table1Variable, ...] = ()
    colours: dict[str, str] = field(default_factory=dict)
    groups_note: str = ""  # what the groups' terms mean, for the report's Methods

    @property
    def baseline_tables(self) -> tuple[tuple[str, str], ...]:
        """The categorical rows of Table 1 as (column, label)."""
        return tuple((v.column, v.label) for v in self.table1 if v.kind == "categorical")


@dataclass(frozen=True)
class Table1Variable:
    """A row of Table 1: a column of the per-patient table, its label and how it is summarised
    (``categorical``: n (%) per level; ``continuous``: median (IQR))."""

    column: str
    label: str
    kind: str = "categorical"


@dataclass(frozen=True)
class Published:
    """Published figures a study reproduces, shown side by side with the registry's: group sizes
    and the median of one endpoint (None: not reported)."""

    source: str
    endpoint: str
    groups: dict[str, tuple[int | None, float | None]]
    note: str = ""


@dataclass(frozen=True)
class CohortDefinition:
    """A cohort as data (a TOML file): steps, groups, endpoints and its analysis."""

    name: str
    version: int
    title: str
    entry: str
    baseline: str
    steps: tuple[Step, ...]
    groups: tuple[Group, ...]
    endpoints: tuple[Endpoint, ...]
    analysis: Analysis
    published: Published | None = None
    # the per-patient table's columns before the endpoints (None: the study table's columns)
    export: tuple[str, ...] | None = None
    # generic drug names whose per-drug facts the cohort's rows carry (registry/cohorts/sql.py:
    # <drug>_maintenance, l2_<drug>, relapse_<drug>_refractory, relapse_<drug>_free_days)
    drugs: tuple[str, ...] = ()

    def endpoint(self, name: str) -> Endpoint:
        for e in self.endpoints:
            if e.name == name:
                return e
        raise StudyError(f"unknown endpoint {name!r} (known: {[e.name for e in self.endpoints]})")


def _parse(data: dict, source: str) -> CohortDefinition:
    try:
        endpoints = tuple(
            Endpoint(e["name"], e["label"], e["origin"], tuple(e["events"]), tuple(e.get("competing", ())))
            for e in data["endpoints"]
        )
        for e in endpoints:
            if (
                not _NAME.match(e.name)
                or e.origin not in ORIGINS
                or set(e.events) - set(EVENTS)
                or set(e.competing) - set(EVENTS)
            ):
                raise DefinitionError(f"{source}: endpoint {e.name!r} is not well formed")
        groups = tuple(Group(g["name"], g["label"], g["condition"]) for g in data["groups"])
        analysis = _analysis(data.get("analysis", {}), groups, source)
        return CohortDefinition(
            name=data["name"],
            version=int(data["version"]),
            title=data["title"],
            entry=data["entry"],
            baseline=data.get("baseline", "l2_start"),
            steps=tuple(Step(s["label"], s["condition"], s["reason"]) for s in data["steps"]),
            groups=groups,
            endpoints=endpoints,
            analysis=analysis,
            published=_published(data.get("published"), endpoints, groups, source),
            export=tuple(data["export"]) if "export" in data else None,
            drugs=_drugs(data.get("drugs", []), source),
        )
    except KeyError as exc:
        raise DefinitionError(f"{source}: missing key {exc}") from None
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"{source}: a value has the wrong type ({exc})") from None


def _drugs(names: list[str], source: str) -> tuple[str, ...]:
    """The declared drugs: generic names of the vocabulary (their facts become columns)."""
    from registry.db.vocabulary import read_vocabulary

    known = {e.generic_name for e in read_vocabulary()}
    unknown = [n for n in names if n not in known or not _DRUG.match(n)]
    if unknown:
        raise DefinitionError(
            f"{source}: drugs {unknown} are not generic names of the drug vocabulary",
            hint="`registry db dictionary` lists the tables; the drugs table holds the names",
        )
    return tuple(names)


def _analysis(a: dict, groups: tuple[Group, ...], source: str) -> Analysis:
    names = [g.name for g in groups]
    reference = a.get("reference_group", names[0] if names else "")
    if reference not in names:
        raise DefinitionError(
            f"{source}: analysis.reference_group {reference!r} is not one of the groups {names}"
        )
    covariates = tuple(
        Covariate(c["column"], c.get("label", c["column"]), c.get("kind", "categorical"), c.get("reference"))
        for c in a.get("covariates", [])
    )
    for c in covariates:
        if c.kind not in ("categorical", "numeric") or (c.kind == "categorical" and not c.reference):
            raise DefinitionError(
                f"{source}: covariate {c.column!r} needs kind numeric, or categorical with a reference level"
            )
    table1 = tuple(
        Table1Variable(t["column"], t.get("label", t["column"]), t.get("kind", "categorical"))
        for t in a.get("table1", [])
    )
    for v in table1:
        if v.kind not in ("categorical", "continuous"):
            raise DefinitionError(f"{source}: table1 row {v.column!r} needs kind categorical or continuous")
    return Analysis(
        reference_group=reference,
        covariates=covariates,
        rate_months=tuple(int(m) for m in a.get("rate_months", (12, 24, 60))),
        at_risk_months=tuple(int(m) for m in a.get("at_risk_months", (0, 12, 24, 36, 48, 60))),
        baseline_heading=a.get("baseline_heading", "Baseline"),
        table1=table1,
        colours=dict(a.get("colours", {})),
        groups_note=str(a.get("groups_note", "")),
    )


def _published(
    p: dict | None, endpoints: tuple[Endpoint, ...], groups: tuple[Group, ...], source: str
) -> Published | None:
    if p is None:
        return None
    if p["endpoint"] not in {e.name for e in endpoints}:
        raise DefinitionError(f"{source}: published.endpoint {p['endpoint']!r} is not an endpoint")
    names = {g.name for g in groups}
    figures = {}
    for g, v in p.get("groups", {}).items():
        if g not in names:
            raise DefinitionError(f"{source}: published group {g!r} is not one of the groups")
        median = v.get("median_months")
        figures[g] = (v.get("n"), None if median is None else float(median))
    return Published(p["source"], p["endpoint"], figures, p.get("note", ""))


def builtin_names() -> list[str]:
    """The names of the cohort definitions shipped with the registry."""
    folder = resources.files("registry.cohorts")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_definition(name_or_path: str) -> CohortDefinition:
    """A built-in definition by name, or a definition file (``.toml``); ``NotFound`` (64) for an
    unknown name, ``DefinitionError`` (78) for a file that is not a valid definition."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DefinitionError(f"{path}: not valid TOML ({exc})") from None
        return _parse(data, str(path))
    if name_or_path not in builtin_names():
        raise NotFound(
            f"no cohort named {name_or_path!r}", hint=f"known cohorts: {', '.join(builtin_names())}"
        )
    text = resources.files("registry.cohorts").joinpath(f"{name_or_path}.toml").read_text("utf-8")
    return _parse(tomllib.loads(text), name_or_path)
