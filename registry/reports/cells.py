"""The release model: which numbers of a report are counts, how the counts relate, and the
last step of every release, which makes sure no small count can be read or solved for.

A report is a JSON-like tree. Every integer in it is a **count** (of patients, events, rows),
unless it sits under a key of ``NOT_COUNTS`` (months, degrees of freedom, versions). A report
declares its counts' **relations** in a ``Model`` built from the internal (unreleased) copy:

- ``sum(total, parts)``: the total is the sum of the parts (a factor's levels add up to its
  patients; a step of the attrition chain; n = events + censored);
- ``same(a, b)``: two cells count one set (a group's size in the survival table and in the
  Cox table);
- ``nested(sup, sub)``: ``sub`` is a subset of ``sup``; their difference is itself a count
  (never shown, so no equation: the censored, the patients who left between two times).

``close(out, model, n)`` is applied to every released report after its own rules:

1. the walker: every count in the copy from 1 to n-1 is hidden (a count added to a report
   later cannot escape it);
2. the closure: with the shown counts known, any hidden count that the sums fix (solved as a
   linear system, one connected set of unknowns at a time), and any nested difference whose
   cells are all shown or fixed, whose true value is 1..n-1 makes one more shown count of its
   relations hidden (the smallest non-zero one, the analysed set's size last), until none is;
3. values derived from a hidden count (its percentage, a standardised difference) go with it;
4. the labels: a hidden count whose true value is 1..n-1 is ``None`` (shown ``<n``); any other
   hidden count is ``PROTECTED`` (shown as a dash, "hidden to protect another count"), so no
   cell ever reads ``<n`` when it holds n or more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Path = tuple[Any, ...]


class Protected:
    """A count hidden although it is not small, to protect another: shown as a dash with a note
    ("hidden to protect another count"), never as a false ``<N``; JSON null."""

    def __str__(self) -> str:
        return "–"

    def __repr__(self) -> str:
        return "PROTECTED"

    def __deepcopy__(self, memo: dict[int, Any]) -> Protected:
        return self


PROTECTED = Protected()


def json_default(value: Any) -> Any:
    """``json.dumps``'s fallback for released reports: a protected count is null."""
    if isinstance(value, Protected):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# keys whose integers are not counts of patients, events or rows
NOT_COUNTS = frozenset(
    {
        "definition_version",
        "df",
        "days",
        "horizon_months",
        "horizon_requested",
        "min_cell",
        "pairwise_tests",
        "at_risk_months",
        "rate_months",
        "landmark_days",
        "published",  # the published study's figures, quoted for comparison
        "rules_revision",
        "schema_revision",
        "run_id",
    }
)

VIRTUAL = "~"  # the first element of a virtual cell's path


def is_hidden(v: Any) -> bool:
    return v is None or isinstance(v, Protected)


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def leaves(data: Any, want: Callable[[Any], bool], path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every value of a report for which ``want`` holds, with its path (lists and dicts walked;
    keys of ``NOT_COUNTS`` not entered), depth first in the report's order. Walked with a stack
    of iterators, not recursive generators (a report's survival tables hold a few hundred
    thousand values: each level of ``yield from`` passed every one of them up again)."""
    if not isinstance(data, (dict, list)):
        if want(data):
            yield path, data
        return
    stack = [(path, _children(data))]
    while stack:
        base, items = stack[-1]
        for k, v in items:
            if isinstance(v, (dict, list)):
                stack.append(((*base, k), _children(v)))
                break
            if want(v):
                yield (*base, k), v
        else:
            stack.pop()


def _children(data: dict[Any, Any] | list[Any]) -> Iterator[tuple[Any, Any]]:
    if isinstance(data, dict):
        return ((k, v) for k, v in data.items() if k not in NOT_COUNTS)
    return enumerate(data)


def count_leaves(data: Any) -> Iterator[tuple[Path, Any]]:
    """Every count of a report (and every count hidden as PROTECTED), with its path."""
    return leaves(data, lambda v: _is_count(v) or isinstance(v, Protected))


_MISSING = object()


def get(data: Any, path: Path) -> Any:
    """The value at ``path``, or ``_MISSING``."""
    for k in path:
        try:
            data = data[k]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


def put(data: Any, path: Path, value: Any) -> None:
    for k in path[:-1]:
        data = data[k]
    data[path[-1]] = value


def label(path: Path) -> str:
    """A path as the release list names it: ``groups.G1.endpoints.os_2l.events``."""
    if path and path[0] == VIRTUAL:
        return str(path[1])
    return ".".join(f"[{k}]" if isinstance(k, int) else str(k) for k in path).replace(".[", "[")


@dataclass
class Model:
    """The counts of one internal report and their relations (see the module's notes)."""

    data: dict[str, Any]
    truth: dict[Path, int] = field(default_factory=dict)
    relations: list[tuple[Path, tuple[Path, ...]]] = field(default_factory=list)
    # differences of nested sets: name -> (cells with their signs, true value); never shown, so
    # they add no equation: such a count is known once every cell of it is
    differences: dict[Path, tuple[dict[Path, int], int]] = field(default_factory=dict)
    follows: dict[Path, list[Path]] = field(default_factory=dict)
    keep: set[Path] = field(default_factory=set)  # hidden last (the analysed set's size)
    equal: dict[Path, set[Path]] = field(default_factory=dict)  # cells of one set (``same``)

    def __post_init__(self) -> None:
        self.truth.update(count_leaves(self.data))

    def value(self, path: Path) -> int | None:
        v = self.truth.get(path)
        return v if _is_count(v) else None

    def sum(self, total: Path, parts: list[Path], *, if_holds: bool = False) -> None:
        """``total = sum(parts)``. With ``if_holds`` declared only where the internal values
        agree (a relation that holds by construction in real registries but not in every
        hand-built frame); otherwise a relation that does not hold is a programming error."""
        values = [self.value(p) for p in (total, *parts)]
        if any(v is None for v in values):
            return
        holds = values[0] == sum(values[1:])  # type: ignore[arg-type]
        if not holds:
            if if_holds:
                return
            raise AssertionError(
                f"relation does not hold: {label(total)} != sum of {[label(p) for p in parts]}"
            )
        self.relations.append((total, tuple(parts)))

    def same(self, a: Path, b: Path, *, if_holds: bool = False) -> None:
        """Two cells count one set: hidden together (hiding one next to the other is futile)."""
        before = len(self.relations)
        self.sum(a, [b], if_holds=if_holds)
        if len(self.relations) > before:
            group = self.equal.get(a, {a}) | self.equal.get(b, {b})
            for p in group:
                self.equal[p] = group

    def with_equals(self, p: Path) -> set[Path]:
        return self.equal.get(p, {p})

    def _terms(self, p: Path) -> tuple[dict[Path, int], int] | None:
        if p in self.differences:
            return self.differences[p]
        v = self.value(p)
        return None if v is None else ({p: 1}, v)

    def nested(self, sup: Path, sub: Path, *, if_holds: bool = False) -> Path | None:
        """``sub`` is a subset of ``sup`` (either may be a difference returned before): their
        difference is a count too; returns its name."""
        a, b = self._terms(sup), self._terms(sub)
        if a is None or b is None:
            return None
        if a[1] < b[1]:
            if if_holds:
                return None
            raise AssertionError(f"not nested: {label(sup)} = {a[1]} < {label(sub)} = {b[1]}")
        terms = dict(a[0])
        for p, c in b[0].items():
            terms[p] = terms.get(p, 0) - c
        name: Path = (VIRTUAL, f"{label(sup)} - {label(sub)}")
        self.differences[name] = ({p: c for p, c in terms.items() if c}, a[1] - b[1])
        return name

    def chain(self, paths: list[Path]) -> list[Path]:
        """Each set a subset of the one before; the difference of every two (virtual counts)."""
        out = []
        for i, sup in enumerate(paths):
            for sub in paths[i + 1 :]:
                d = self.nested(sup, sub)
                if d is not None:
                    out.append(d)
        return out

    def follow(self, count: Path, derived: Path) -> None:
        """``derived`` (a percentage, an SMD) is hidden whenever ``count`` is."""
        self.follows.setdefault(count, []).append(derived)


# ------------------------------------------------------------------------------ the solver
def determined(model: Model, known: dict[Path, int]) -> dict[Path, float]:
    """The hidden cells that the relations fix, given the shown ones, with
    their values: for each connected group of unknowns, the least-squares solution of its
    equations, kept where the null space of the system leaves the cell no freedom."""
    rows: list[tuple[dict[Path, float], float]] = []
    for total, parts in model.relations:
        coef: dict[Path, float] = {}
        rhs = 0.0
        for p, sign in ((total, 1.0), *((q, -1.0) for q in parts)):
            if p in known:
                rhs -= sign * known[p]
            else:
                coef[p] = coef.get(p, 0.0) + sign
        coef = {p: c for p, c in coef.items() if c}
        if coef:
            rows.append((coef, rhs))
    parent: dict[Path, Path] = {}

    def find(p: Path) -> Path:
        while parent.setdefault(p, p) != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    for coef, _ in rows:
        first, *rest = coef
        for p in rest:
            parent[find(p)] = find(first)
    groups: dict[Path, list[int]] = {}
    for i, (coef, _) in enumerate(rows):
        groups.setdefault(find(next(iter(coef))), []).append(i)
    out: dict[Path, float] = {}
    for members in groups.values():
        unknowns = sorted({p for i in members for p in rows[i][0]}, key=repr)
        index = {p: j for j, p in enumerate(unknowns)}
        a = np.zeros((len(members), len(unknowns)))
        b = np.zeros(len(members))
        for r, i in enumerate(members):
            for p, c in rows[i][0].items():
                a[r, index[p]] = c
            b[r] = rows[i][1]
        _, s, vt = np.linalg.svd(a)
        rank = int((s > 1e-9 * max(1.0, float(s.max(initial=0.0)))).sum())
        null = vt[rank:]
        x = np.linalg.lstsq(a, b, rcond=None)[0]
        free = np.abs(null).max(axis=0) if len(null) else np.zeros(len(unknowns))
        for p, j in index.items():
            if free[j] < 1e-9:
                out[p] = float(x[j])
    return out


def _candidates(model: Model, target: Path, shown: set[Path]) -> list[Path]:
    """The shown cells of the relations that reach ``target`` through unknown cells (nearest
    first): hiding one of them breaks the relation that fixes it."""
    seen = {target}
    frontier = {target}
    while frontier:
        rels = [(t, ps) for t, ps in model.relations if frontier & {t, *ps}]
        found = {p for t, ps in rels for p in (t, *ps) if p in shown}
        if found:
            return sorted(found, key=repr)
        frontier = {p for t, ps in rels for p in (t, *ps) if p not in seen and p not in shown}
        seen |= frontier
    return []


def _first_leak(
    model: Model, known: dict[Path, int], solved: dict[Path, float], n: int
) -> tuple[Path | None, list[Path]]:
    """A count 1..n-1 that is known: a hidden cell the relations fix, or a difference of nested
    sets whose every cell is shown or fixed; with the cells it is known through."""
    for p in sorted(solved, key=repr):
        if 0 < model.truth.get(p, 0) < n:
            return p, [p]
    for name, (terms, truth) in model.differences.items():
        if 0 < truth < n and all(p in known or p in solved for p in terms):
            return name, list(terms)
    return None, []


TRIALS = 6  # candidates tried per leak before the smallest is taken anyway


def _still_known(model: Model, known: dict[Path, int], hide: Path, leak: Path) -> bool:
    trial = {p: v for p, v in known.items() if p not in model.with_equals(hide)}
    solved = determined(model, trial)
    if leak in model.differences:
        return all(p in trial or p in solved for p in model.differences[leak][0])
    return leak in solved


def close(out: dict[str, Any], model: Model, n: int, hidden: list[str]) -> None:
    """Steps 1-4 of the module's notes, on the released copy ``out`` (changed in place)."""
    for path, v in list(count_leaves(out)):  # 1. the walker
        if _is_count(v) and 0 < v < n:
            put(out, path, None)
            hidden.append(label(path))
    # the shown counts, taken once (each round hides one more and drops it from here)
    known = {p: v for p in model.truth for v in [get(out, p)] if _is_count(v)}
    while _hide_one_more(out, model, n, hidden, known):  # 2. the closure
        pass
    for count, derived in model.follows.items():  # 3. derived values go with their count
        if is_hidden(get(out, count)):
            for d in derived:
                if get(out, d) is not _MISSING:
                    put(out, d, None)
    for path, _ in list(leaves(out, is_hidden)):  # 4. honest labels
        truth = model.truth.get(path)
        if truth is not None and _is_count(truth):
            put(out, path, None if 0 < truth < n else PROTECTED)


def _hide_one_more(
    out: dict[str, Any], model: Model, n: int, hidden: list[str], known: dict[Path, int]
) -> bool:
    """While a count 1..n-1 can be worked out from the shown ones (``known``: the counts
    ``out`` shows), hide one more shown count (one that breaks the leak where the six smallest
    candidates hold one) in ``out`` and drop it from ``known``. False: no leak."""
    solved = determined(model, known)
    leak, cells = _first_leak(model, known, solved, n)
    if leak is None:
        return False
    options = {p for p in cells if p in known}
    for p in cells:  # cells fixed through relations: break one of those relations
        if p not in known:
            options |= set(_candidates(model, p, set(known)))
    if not options:  # cannot happen: a count is known only through a shown one
        raise AssertionError(f"{label(leak)} is known through no shown count")
    ranked = sorted(options, key=lambda p: (p in model.keep, known[p] == 0, known[p], repr(p)))
    # the first (smallest) whose hiding, with the cells of the same set, makes the leak unknown;
    # else the first (the next round goes on from there)
    chosen = next((p for p in ranked[:TRIALS] if not _still_known(model, known, p, leak)), ranked[0])
    for p in model.with_equals(chosen):
        if p in known:
            put(out, p, PROTECTED)
            del known[p]
            hidden.append(f"{label(p)} (complementary: {label(leak)})")
    return True
