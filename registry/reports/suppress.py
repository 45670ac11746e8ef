"""The release step: what a study report's JSON may show, for every output (JSON, HTML, CSV
tables, plots, warnings), with or without a small-cell threshold.

``released(data, n)`` returns the copy every renderer draws from. Without ``n`` the copy is
marked "internal - not for release". With ``n`` (``--min-cell N``) every count from 1 to N-1 is
replaced by None (shown as ``<N``) and listed under ``suppressed``; zeros are shown. So that a
hidden count cannot be recovered from the counts that are shown:

- group sizes add up to the cohort: if exactly one is hidden, the next smallest is too; a group
  whose size is hidden is not described at all (no curve, estimates, Table 1 column, Cox or
  log-rank rows: a curve's steps or a median would reveal what its size hides), and when it is
  the reference group no group's hazard ratio is shown;
- in the attrition chain, remaining(k) = remaining(k-1) - excluded(k): a hidden count hides
  other cells of its relations until none has exactly one unknown, keeping the analysed set's
  size (shown everywhere) and hiding earlier cells instead;
- in Table 1 each column adds up to its group's size and each row's total to the sum of the
  groups: any relation left with exactly one hidden cell hides its smallest other cell, until
  none is; a percentage is hidden with its count, a median (IQR) of fewer than N values is
  hidden, and a variable with any hidden cell shows no SMD;
- events + censored = n: both go when one does; numbers at risk and cumulative events under a
  curve are hidden one by one (they are not parts of a shown total);
- the data-quality step hides patient rows read when the patient rows quarantined are hidden
  (their difference is close to the registry's patients);
- warnings carry their counts as fields and are written here, with ``<N`` for a small one.

A report whose analysed set (the cohort, or the landmark set) is smaller than N is refused.

After these rules every release ends with ``registry.reports.cells.close``: the walker over
every count, the closure over the relations the report declares (``registry.reports.relations``)
and honest labels (``<N`` only on a count below N).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from registry.core.errors import ReportRefused
from registry.reports.cells import PROTECTED, Model, Protected, close, get, json_default
from registry.reports.relations import study_model

__all__ = ["PROTECTED", "Protected", "json_default", "release_with", "released", "series", "truncate_curve"]

INTERNAL = "internal - not for release"


def _small(v: Any, n: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 < v < n


def _complement(cells: dict[str, int | None], n: int, hidden: list[str], where: str) -> list[str]:
    """Small cells hidden; if exactly one is, the smallest other too (they add up to a shown
    total). Returns the cells hidden only to protect another (to be marked ``PROTECTED``)."""
    small = [k for k, v in cells.items() if _small(v, n)]
    for k in small:
        cells[k] = None
        hidden.append(f"{where}.{k}")
    if len([k for k, v in cells.items() if v is None]) == 1:
        rest = [(v, k) for k, v in cells.items() if v is not None and v > 0]
        if rest:
            _, k = min(rest)
            cells[k] = None
            hidden.append(f"{where}.{k} (complementary)")
            return [k]
    return []


def _pick(shown: list[tuple[int, Any]]) -> Any:
    """The cell to hide for a complement: the smallest non-zero one, else any zero."""
    nonzero = [(v, k) for v, k in shown if v > 0]
    return min(nonzero, key=lambda vk: vk[0])[1] if nonzero else shown[0][1]


def _close(
    cells: dict[Any, int | None], relations: list[list[Any]], protected: frozenset[Any] = frozenset()
) -> list[Any]:
    """Complementary suppression over linear relations (each relation: one of its cells is the
    sum or difference of the others): while a relation has exactly one hidden cell, hide its
    smallest other shown cell that is not protected. Returns the cells hidden here."""
    added = []
    changed = True
    while changed:
        changed = False
        for rel in relations:
            if [cells[k] for k in rel].count(None) != 1:
                continue
            shown = [(cells[k], k) for k in rel if cells[k] is not None and k not in protected]
            shown = shown or [(cells[k], k) for k in rel if cells[k] is not None]
            if not shown:
                continue
            k = _pick(shown)  # type: ignore[arg-type]
            cells[k] = None
            added.append(k)
            changed = True
    return added


def _table1(t1: dict[str, Any], hidden_groups: set[str], n: int, hidden: list[str]) -> None:
    columns = t1["columns"]
    col_n = t1["n"]
    for c in columns:
        if c in hidden_groups or _small(col_n[c], n):
            col_n[c] = None
    by_var: dict[str, list[dict[str, Any]]] = {}
    for row in t1["rows"]:
        by_var.setdefault(row["variable"], []).append(row)
    for var, rows in by_var.items():
        if rows[0]["kind"] == "continuous":
            _table1_continuous(rows[0], col_n, columns[-1], n)
        else:
            _table1_categorical(var, rows, columns, col_n, n, hidden)


def _table1_continuous(row: dict[str, Any], col_n: dict[str, Any], total: str, n: int) -> None:
    for c, cell in row["cells"].items():
        if col_n[c] is None or cell["values"] < n:
            cell.update(median=None, q1=None, q3=None)
        if col_n[c] is None or _small(cell["missing"], n):
            cell["missing"] = None
        cell["values"] = None  # n - missing: never shown (it would give the missing count)
    if any(cell["median"] is None for c, cell in row["cells"].items() if c != total):
        row["smd"] = None


def _table1_categorical(
    var: str, rows: list[dict[str, Any]], columns: list[str], col_n: dict[str, Any], n: int, hidden: list[str]
) -> None:
    """Hide small cells, then close every relation (a row's columns, a column's levels) left
    with one unknown."""
    cells = {(i, c): r["cells"][c] for i, r in enumerate(rows) for c in columns}
    for (i, c), cell in cells.items():
        if col_n[c] is None or _small(cell["n"], n):
            if cell["n"] is not None:
                hidden.append(f"table1.{var}.{rows[i]['level']}.{c}")
            cell["n"] = None
    values = {k: cell["n"] for k, cell in cells.items()}
    relations = [[(i, c) for i in range(len(rows))] for c in columns if col_n[c] is not None]
    relations += [[(i, c) for c in columns] for i in range(len(rows))]
    protected = _close(values, relations)
    for k in protected:
        cells[k]["n"] = None
        hidden.append(f"table1.{var}.{rows[k[0]]['level']}.{k[1]} (complementary)")
    for cell in cells.values():
        if cell["n"] is None:
            cell["pct"] = None
    if any(cell["n"] is None for cell in cells.values()):
        rows[0]["smd"] = None
    for k in protected:  # hidden for another cell: a dash, never a false <N
        cells[k]["n"] = PROTECTED


def _attrition(steps: list[dict[str, Any]], n: int, hidden: list[str]) -> None:
    """remaining(k) = remaining(k-1) - excluded(k) for every step: small cells hidden, then the
    closure, which keeps the analysed set's size (the last remaining, shown everywhere) and hides
    earlier cells instead."""
    cells: dict[tuple[int, str], int | None] = {}
    for i, step in enumerate(steps):
        cells[(i, "remaining")] = step["remaining"]
        if i:
            cells[(i, "excluded")] = step["excluded"]
    for k, v in cells.items():
        if _small(v, n):
            cells[k] = None
            hidden.append(f"attrition[{k[0]}].{k[1]}")
    relations = [[(i - 1, "remaining"), (i, "remaining"), (i, "excluded")] for i in range(1, len(steps))]
    protected = _close(cells, relations, frozenset({(len(steps) - 1, "remaining")}))
    for k in protected:
        hidden.append(f"attrition[{k[0]}].{k[1]} (complementary)")
    for (i, part), v in cells.items():
        steps[i][part] = PROTECTED if (i, part) in protected else v


def _pair(row: dict[str, Any], total: str, part: str, n: int, hidden: list[str], where: str) -> None:
    """A count and a part of it (patients and events): shown together only when neither nor
    their difference (the censored) is 1..n-1; else both are hidden."""
    a, b = row.get(total), row.get(part)
    if a is None and b is None:
        return
    if a is None or b is None or _small(a - b, n):
        # the small one is <N; one hidden only because of the other (or their difference) is
        # protected: a dash, never a false <N
        row[total] = None if a is None or _small(a, n) else PROTECTED
        row[part] = None if b is None or _small(b, n) else PROTECTED
        hidden.append(f"{where}.{part} (n - {part} below the threshold)")


def series(values: dict[str, Any], n: int, start: int | None) -> list[str]:
    """Numbers at risk or cumulative events at successive times: a value is shown only where it
    and its change since the last value shown (``start`` before the first: the group's size,
    or 0) are each 0 or at least ``n`` (the change between two times counts the patients who
    had an event or were censored between them). Returns the times hidden."""
    hidden = []
    last = start
    for t in sorted(values, key=float):
        v = values[t]
        if v is None:
            continue
        small = 0 < v < n
        ok = not small and (last is None or abs(v - last) == 0 or abs(v - last) >= n)
        if ok:
            last = v
        else:  # a small value is <n; a larger one hidden for its change is protected
            values[t] = None if small else PROTECTED
            hidden.append(t)
    return hidden


def truncate_curve(curve: dict[str, Any], n: int) -> float | None:
    """Cut a curve where fewer than ``n`` patients remain at risk (each later step would
    describe fewer than ``n``); drop its per-time counts. Returns the time it stops at, or None
    when it runs to its end."""
    risk = curve.pop("n_risk", None)
    curve.pop("n_event", None)
    curve.pop("n_censor", None)
    if not risk:
        return None
    cut = next((i for i, r in enumerate(risk) if r < n), None)
    if cut is None:
        return None
    times = curve.get("time_months", [])
    stop = times[cut] if cut < len(times) else None
    for key in ("time_months", "surv", "lower", "upper", "estimate"):
        if isinstance(curve.get(key), list):
            curve[key] = curve[key][:cut]
    if stop is not None and isinstance(curve.get("censored_months"), list):
        keep = [i for i, t in enumerate(curve["censored_months"]) if t < stop]
        for key in ("censored_months", "censored_surv", "censored_estimate"):
            if isinstance(curve.get(key), list):
                curve[key] = [curve[key][i] for i in keep]
    curve["stops_at_months"] = stop
    return stop


def curves_note(out: dict[str, Any], n: int) -> None:
    out["warnings"].append(
        f"Curves stop where fewer than {n} patients remain at risk; numbers at risk and "
        f"cumulative events are shown only where they and their change since the previous time "
        f"shown are 0 or at least {n} (– : hidden to protect another count)."
    )


def _warnings(out: dict[str, Any], n: int | None) -> list[str]:
    """The warnings as text: a count linked to a report cell (``cells``) shows what that cell
    shows (``<n`` or a dash when it is hidden); any other count below ``n`` reads ``<n``."""
    texts = []
    for w in out.get("warnings", []):
        if isinstance(w, str):
            texts.append(w)
            continue
        text = w["text"]
        for name, value in w.get("counts", {}).items():
            cell = w.get("cells", {}).get(name)
            shown = value if cell is None or not n else get(out, tuple(cell))
            if isinstance(shown, Protected):
                text_value = "–"
            elif shown is None or (n and _small(shown, n)) or value is None:
                text_value = f"<{n}"
            else:
                text_value = str(value)
            text = text.replace("{" + name + "}", text_value)
        texts.append(text)
    return texts


def release_with(
    report: dict[str, Any],
    n: int | None,
    cells: Callable[[dict[str, Any], int, list[str]], None],
    model: Callable[[dict[str, Any]], Model],
    *,
    what: str,
    hint: str,
) -> dict[str, Any]:
    """The release step every report shares: a copy with its warnings written (small counts as
    ``<n``); without ``n`` marked internal; with it, refused (``ReportRefused``, 65) when the
    analysed set (``what``) has fewer than ``n`` patients, else the attrition chain closed, the
    report's own cells hidden by ``cells(copy, n, hidden)``, and the release recorded."""
    out = copy.deepcopy(report)
    if not n:
        out["warnings"] = _warnings(out, n)
        out["release"] = {"status": INTERNAL, "min_cell": None}
        out["suppressed"] = []
        return out
    if (out.get("n") or 0) < n:
        raise ReportRefused(
            f"the {what} has fewer patients than the release threshold ({n}): nothing in it could be shown",
            hint=hint,
        )
    hidden: list[str] = []
    _attrition(out["attrition"], n, hidden)
    cells(out, n, hidden)
    close(out, model(report), n, hidden)  # the walker and the closure over every count
    out["warnings"] = _warnings(out, n)
    out["release"] = {"status": f"released: counts below {n} suppressed", "min_cell": n}
    out["min_cell"] = n
    out["suppressed"] = hidden
    return out


def released(report: dict[str, Any], n: int | None = None) -> dict[str, Any]:
    """The copy of a study report's JSON every output is drawn from; see the module's notes.

    Raises
    ------
    ReportRefused
        With ``n``, when the analysed set (the cohort, or the landmark set) has fewer than ``n``
        patients.
    """
    return release_with(
        report,
        n,
        _study_cells,
        study_model,
        what="landmark set" if report.get("landmark") else "cohort",
        hint="release a larger cohort (a later cutoff, an earlier landmark) or keep the report internal",
    )


def _study_cells(out: dict[str, Any], n: int, hidden: list[str]) -> None:
    sizes = {g: v["n"] for g, v in out["groups"].items()}
    protected = _complement(sizes, n, hidden, "groups.n")
    hidden_groups = {g for g, v in sizes.items() if v is None}
    for g, v in out["groups"].items():
        v["n"] = sizes[g]
        for ep, s in v["endpoints"].items():
            if g in hidden_groups:
                v["endpoints"][ep] = _withheld(s)
            else:
                _group_endpoint(s, v["n"], n, hidden, f"groups.{g}.endpoints.{ep}")
    for curves in out.get("curves", {}).values():
        for g in list(curves):
            if g in hidden_groups:
                del curves[g]
                continue
            truncate_curve(curves[g], n)  # per-time counts dropped; no step among fewer than n
    curves_note(out, n)
    if "table1" in out:
        _table1(out["table1"], hidden_groups, n, hidden)
    _cox_cells(out, hidden_groups, n, hidden)
    for row in out.get("logrank", []):
        if set(row["groups"]) & hidden_groups:
            row.update(chi2=None, p=None, suppressed=True)
    _context_counts(out, n, hidden)
    for g in protected:  # a group hidden only because another is: a dash, never a false <N
        out["groups"][g]["n"] = PROTECTED


def _withheld(s: dict[str, Any]) -> dict[str, Any]:
    """An endpoint summary of a hidden group: every value withheld, its shape kept."""
    out: dict[str, Any] = {
        key: dict.fromkeys(val)
        if isinstance(val, dict)
        else [None] * len(val)
        if isinstance(val, list)
        else None
        for key, val in s.items()
    }
    out["suppressed"] = True
    return out


def _group_endpoint(s: dict[str, Any], size: int | None, n: int, hidden: list[str], where: str) -> None:
    if _small(s.get("events"), n) or _small(s.get("censored"), n):
        s["events"] = s["censored"] = None
        hidden.append(f"{where}.events")
    for key, start in (("at_risk", size), ("cumulative_events", 0)):
        for t in series(s.get(key, {}), n, start):
            hidden.append(f"{where}.{key}.{t}")


def _cox_cells(out: dict[str, Any], hidden_groups: set[str], n: int, hidden: list[str]) -> None:
    reference_hidden = out.get("analysis", {}).get("reference_group") in hidden_groups
    for row in out.get("cox", []):
        # every group's hazard ratio is relative to the reference group: none if it is hidden
        if row.get("variable") == "Group" and (row.get("level") in hidden_groups or reference_hidden):
            row.update(hr=None, hr_ci=[None, None], p=None, n=None, events=None, suppressed=True)
        for key in ("n", "events", "model_n", "model_events"):
            if _small(row.get(key), n):
                row[key] = None
        # n and events of one set shown together give its censored count: hidden with them
        where = f"cox.{row.get('endpoint')}.{row.get('term')}"
        _pair(row, "n", "events", n, hidden, where)
        _pair(row, "model_n", "model_events", n, hidden, f"{where}.model")
        group = out["groups"].get(row.get("level")) if row.get("variable") == "Group" else None
        if group is not None:  # the same set as the survival table's: hidden where that one is
            survival = group["endpoints"].get(row.get("endpoint"), {})
            if survival.get("events") is None:
                row["n"] = row["events"] = None


def _context_counts(out: dict[str, Any], n: int, hidden: list[str]) -> None:
    """The data-quality step's and the night's counts."""
    dq = out.get("data_quality")
    if dq:
        for key in ("rows_read", "rows_quarantined", "patients_read", "patients_quarantined"):
            if _small(dq.get(key), n):
                dq[key] = None
                hidden.append(f"data_quality.{key}")
        if dq.get("patients_quarantined") is None:  # patient rows read - quarantined ~ patients loaded
            dq["patients_read"] = None
    night = out.get("since_last_night")
    if night:
        for label, v in night["counts"].items():
            if _small(v, n):
                night["counts"][label] = None
                hidden.append(f"since_last_night.{label}")
