"""The relations between the counts of each report (``registry.reports.cells.Model``): what an
attacker holding every released number knows about how they fit together. A relation that a
report's construction guarantees is declared outright (it is checked to hold); one that holds in
a real registry but not by construction (PFS events = relapses + deaths without relapse) is
declared where it holds (``if_holds``): declaring more only ever hides more."""

from __future__ import annotations

from typing import Any

from registry.reports.cells import Model, Path


def _attrition(m: Model, steps: list[dict[str, Any]]) -> None:
    for i in range(1, len(steps)):
        m.sum(
            ("attrition", i - 1, "remaining"), [("attrition", i, "remaining"), ("attrition", i, "excluded")]
        )
    if steps:
        m.same(("attrition", len(steps) - 1, "remaining"), ("n",), if_holds=True)


def _series(m: Model, base: Path, times: dict[str, Any], events_by: dict[str, Any] | None) -> None:
    """Numbers at risk (patients with time >= t: each set inside the one before, all inside the
    endpoint's patients) and cumulative events (events with time <= t: each inside the next, all
    inside the endpoint's events); the patients gone before t_k hold the events up to any
    earlier t_j, so their difference is a count too."""
    order = sorted(times, key=float)
    at_risk = [(*base, "at_risk", t) for t in order]
    gone = [m.nested((*base, "n"), p) for p in at_risk]  # the patients gone before each time
    m.chain(at_risk)
    if events_by is None:
        return
    cumulative = [(*base, "cumulative_events", t) for t in sorted(events_by, key=float)]
    m.chain([(*base, "events"), *reversed(cumulative)])
    for k, before_t in enumerate(gone):
        if before_t is None:
            continue
        for earlier in order[:k]:
            m.nested(before_t, (*base, "cumulative_events", earlier), if_holds=True)


def study_model(data: dict[str, Any]) -> Model:
    """The study report's counts: groups add up to the cohort; each group's endpoint counts
    (n = events + censored, numbers at risk, cumulative events); the Cox table's rows count the
    same sets as the survival table (unadjusted) or subsets of them (adjusted: complete cases),
    and each factor's levels add up to the model's patients and events; Table 1's columns and
    rows add up; the attrition chain."""
    m = Model(data)
    m.keep.add(("n",))
    groups = data.get("groups", {})
    m.sum(("n",), [("groups", g, "n") for g in groups])
    for g, v in groups.items():
        for ep, s in v.get("endpoints", {}).items():
            base: Path = ("groups", g, "endpoints", ep)
            m.nested(("groups", g, "n"), (*base, "n"))
            m.sum((*base, "n"), [(*base, "events"), (*base, "censored")])
            _series(m, base, s.get("at_risk", {}), s.get("cumulative_events"))
    _cox(m, data)
    _table1(m, data)
    _attrition(m, data.get("attrition", []))
    return m


def _cox(m: Model, data: dict[str, Any]) -> None:
    rows = list(enumerate(data.get("cox", [])))
    by_model: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
    for i, row in rows:
        by_model.setdefault((row["endpoint"], row["model"]), []).append((i, row))
    for (ep, model), members in by_model.items():
        first = members[0][0]
        for i, _ in members[1:]:
            m.same(("cox", first, "model_n"), ("cox", i, "model_n"))
            m.same(("cox", first, "model_events"), ("cox", i, "model_events"))
        variables: dict[str, list[int]] = {}
        for i, row in members:
            if row.get("level") is None:  # a continuous covariate: every patient of the model
                m.same(("cox", i, "n"), ("cox", i, "model_n"))
                m.same(("cox", i, "events"), ("cox", i, "model_events"))
                continue
            variables.setdefault(row["variable"], []).append(i)
            if row["variable"] == "Group":
                survival: Path = ("groups", row["level"], "endpoints", ep)
                if model == "unadjusted":
                    m.same((*survival, "n"), ("cox", i, "n"), if_holds=True)
                    m.same((*survival, "events"), ("cox", i, "events"), if_holds=True)
                m.nested((*survival, "n"), ("cox", i, "n"), if_holds=True)
                m.nested((*survival, "events"), ("cox", i, "events"), if_holds=True)
        for levels in variables.values():
            m.sum(("cox", first, "model_n"), [("cox", i, "n") for i in levels])
            m.sum(("cox", first, "model_events"), [("cox", i, "events") for i in levels])
        for i, _ in members:
            m.nested(("cox", i, "n"), ("cox", i, "events"))
    # the adjusted model's patients are the unadjusted model's with every covariate recorded:
    # the difference is the count the "left out" warning gives
    for ep in {ep for ep, _ in by_model}:
        unadjusted, adjusted = by_model.get((ep, "unadjusted")), by_model.get((ep, "adjusted"))
        if unadjusted and adjusted:
            for key in ("model_n", "model_events"):
                m.nested(("cox", unadjusted[0][0], key), ("cox", adjusted[0][0], key), if_holds=True)


def _table1(m: Model, data: dict[str, Any]) -> None:
    t1 = data.get("table1")
    if not t1:
        return
    columns = t1["columns"]
    total = columns[-1]
    for c in columns[:-1]:
        m.same(("groups", c, "n"), ("table1", "n", c), if_holds=True)
    m.sum(("table1", "n", total), [("table1", "n", c) for c in columns[:-1]])
    by_var: dict[str, list[int]] = {}
    for i, row in enumerate(t1["rows"]):
        by_var.setdefault(row["variable"], []).append(i)
    for members in by_var.values():
        first = t1["rows"][members[0]]
        if first["kind"] == "continuous":
            i = members[0]
            for c in columns:
                cell: Path = ("table1", "rows", i, "cells", c)
                # the values counted are never shown (they would give the missing back); the
                # median of fewer than n values is hidden by the report's own rule
                m.sum(("table1", "n", c), [(*cell, "values"), (*cell, "missing")])
            for key in ("values", "missing"):
                m.sum(
                    ("table1", "rows", i, "cells", total, key),
                    [("table1", "rows", i, "cells", c, key) for c in columns[:-1]],
                )
            continue
        for c in columns:
            m.sum(("table1", "n", c), [("table1", "rows", i, "cells", c, "n") for i in members])
        for i in members:
            m.sum(
                ("table1", "rows", i, "cells", total, "n"),
                [("table1", "rows", i, "cells", c, "n") for c in columns[:-1]],
            )
            for c in columns:
                m.follow(("table1", "rows", i, "cells", c, "n"), ("table1", "rows", i, "cells", c, "pct"))
                m.follow(("table1", "rows", i, "cells", c, "n"), ("table1", "rows", members[0], "smd"))


def outcomes_model(data: dict[str, Any]) -> Model:
    """The outcomes report's counts: each endpoint's patients are the cohort (or the level, or
    the landmark set), its events a subset, its numbers at risk a chain; a factor's levels add
    up to the cohort (the landmark set for maintenance), and so do their events and numbers at
    risk; PFS events are relapses plus deaths without relapse where that holds; the Fine-Gray
    model's patients and those it dropped add up to the cohort; the attrition chain."""
    m = Model(data)
    m.keep.add(("n",))
    _endpoints(m, ("endpoints",), ("n",), data.get("endpoints", {}))
    for var, s in data.get("strata", {}).items():
        size: Path = ("strata", var, "n")
        m.nested(("n",), size)
        levels = s.get("levels", {})
        m.sum(size, [("strata", var, "levels", lv, "n") for lv in levels])
        for lv, v in levels.items():
            _endpoints(
                m,
                ("strata", var, "levels", lv, "endpoints"),
                ("strata", var, "levels", lv, "n"),
                v["endpoints"],
            )
        if s.get("landmark_days"):
            continue  # the landmark set's own endpoint counts are not shown
        for name, e in data.get("endpoints", {}).items():
            parts = [("strata", var, "levels", lv, "endpoints", name) for lv in levels]
            m.sum(("endpoints", name, "events"), [(*p, "events") for p in parts])
            for t in e.get("at_risk", {}):
                m.sum(("endpoints", name, "at_risk", t), [(*p, "at_risk", t) for p in parts])
    _responses(m, data.get("response"))
    fg = data.get("fine_gray")
    if fg:
        m.sum(("n",), [("fine_gray", "n"), ("fine_gray", "n_dropped")], if_holds=True)
        m.nested(("fine_gray", "n"), ("fine_gray", "events"))
        m.nested(("endpoints", "relapse", "events"), ("fine_gray", "events"), if_holds=True)
    _attrition(m, data.get("attrition", []))
    return m


def _endpoints(m: Model, base: Path, size: Path, endpoints: dict[str, Any]) -> None:
    for name, e in endpoints.items():
        here: Path = (*base, name)
        m.same(size, (*here, "n"))
        m.nested((*here, "n"), (*here, "events"))
        _series(m, here, e.get("at_risk", {}), None)
    if {"pfs", "relapse", "nrm"} <= set(endpoints):
        m.sum(
            (*base, "pfs", "events"), [(*base, "relapse", "events"), (*base, "nrm", "events")], if_holds=True
        )


def _responses(m: Model, resp: dict[str, Any] | None) -> None:
    """Each response set's categories add up to its patients (the cohort at day 100 and for the
    first line; those with a second line); the duration of response counts the first line's
    responders (partial response or better) where that holds, time to next treatment the cohort."""
    if not resp:
        return
    for key, st in resp["sets"].items():
        size: Path = ("response", "sets", key, "n")
        (m.same if key in ("day100", "l1") else m.nested)(("n",), size)
        m.sum(size, [("response", "sets", key, "levels", lv) for lv in st["levels"]])
    for name, e in resp["endpoints"].items():
        here: Path = ("response", "endpoints", name)
        m.nested(("n",), (*here, "n"))
        m.nested((*here, "n"), (*here, "events"))
        _series(m, here, e.get("at_risk", {}), None)
    if "dor" in resp["endpoints"] and "l1" in resp["sets"]:
        responders = [("response", "sets", "l1", "levels", lv) for lv in ("sCR", "CR", "VGPR", "PR")]
        m.sum(("response", "endpoints", "dor", "n"), responders, if_holds=True)
    if "ttnt" in resp["endpoints"]:
        m.same(("n",), ("response", "endpoints", "ttnt", "n"), if_holds=True)
