"""Load and check declarative cohort definitions."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from registry.core.errors import DefinitionError, NotFound, StudyError

ORIGINS = ("l2_start", "index_transplant_date")
EVENTS = ("death", "relapse", "progression_after_l2")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Step:
    label: str
    condition: str
    reason: str


@dataclass(frozen=True)
class Group:
    name: str
    label: str
    condition: str


@dataclass(frozen=True)
class Endpoint:
    name: str
    label: str
    origin: str
    events: tuple[str, ...]

    @property
    def origin_is_baseline(self) -> bool:
        return self.origin == "l2_start"


@dataclass(frozen=True)
class CohortDefinition:
    name: str
    version: int
    title: str
    entry: str
    baseline: str
    steps: tuple[Step, ...]
    groups: tuple[Group, ...]
    endpoints: tuple[Endpoint, ...]

    def endpoint(self, name: str) -> Endpoint:
        for e in self.endpoints:
            if e.name == name:
                return e
        raise StudyError(f"unknown endpoint {name!r} (known: {[e.name for e in self.endpoints]})")


def _parse(data: dict, source: str) -> CohortDefinition:
    try:
        endpoints = tuple(
            Endpoint(e["name"], e["label"], e["origin"], tuple(e["events"])) for e in data["endpoints"]
        )
        for e in endpoints:
            if not _NAME.match(e.name) or e.origin not in ORIGINS or set(e.events) - set(EVENTS):
                raise DefinitionError(f"{source}: endpoint {e.name!r} is not well formed")
        return CohortDefinition(
            name=data["name"],
            version=int(data["version"]),
            title=data["title"],
            entry=data["entry"],
            baseline=data.get("baseline", "l2_start"),
            steps=tuple(Step(s["label"], s["condition"], s["reason"]) for s in data["steps"]),
            groups=tuple(Group(g["name"], g["label"], g["condition"]) for g in data["groups"]),
            endpoints=endpoints,
        )
    except KeyError as exc:
        raise DefinitionError(f"{source}: missing key {exc}") from None
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"{source}: a value has the wrong type ({exc})") from None


def builtin_names() -> list[str]:
    folder = resources.files("registry.cohorts")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_definition(name_or_path: str) -> CohortDefinition:
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
