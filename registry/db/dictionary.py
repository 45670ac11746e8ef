"""The data dictionary: every view an analyst reads and every table, column by column, from the
models and the views' own descriptions (``registry db dictionary``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from registry.core.csvsafe import safe_cell
from registry.db.models import Base
from registry.db.views import VIEWS


def dictionary(extra_views: Sequence[tuple[str, Sequence[tuple[str, str]]]] = ()) -> list[dict[str, Any]]:
    """One entry per column: object kind (view / table), object, column, type, nullable and
    description — the analysts' views, then ``extra_views`` ((name, (column, description)...),
    e.g. the cohorts' views, which this layer does not know), then tables in dependency order."""
    out: list[dict[str, Any]] = []
    views = [(v.name, v.columns) for v in VIEWS] + list(extra_views)
    for name, columns in views:
        for view_column, description in columns:
            out.append(
                {
                    "kind": "view",
                    "object": name,
                    "column": view_column,
                    "type": "",
                    "nullable": "",
                    "description": description,
                }
            )
    docs: dict[str, str] = {}
    for mapper in Base.registry.mappers:
        tablename = getattr(mapper.class_, "__tablename__", None)
        if isinstance(tablename, str):
            docs[tablename] = (mapper.class_.__doc__ or "").strip().split("\n")[0]
    for table in Base.metadata.sorted_tables:
        table_doc = docs.get(table.name, "")
        for col in table.columns:
            out.append(
                {
                    "kind": "table",
                    "object": table.name,
                    "column": col.name,
                    "type": str(col.type.compile()),
                    "nullable": "yes" if col.nullable else "no",
                    "description": col.comment or col.doc or (table_doc if col.primary_key else ""),
                }
            )
    return out


def render(entries: list[dict[str, Any]], fmt: str) -> str:
    """The dictionary as csv, json or a Markdown table."""
    if fmt == "json":
        return json.dumps(entries, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(entries[0]), lineterminator="\n")
        w.writeheader()
        w.writerows({k: safe_cell(v) for k, v in e.items()} for e in entries)  # like every CSV we write
        return buf.getvalue()
    lines = ["| kind | object | column | type | nullable | description |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {e['kind']} | `{e['object']}` | `{e['column']}` | {e['type']} "
        f"| {e['nullable']} | {e['description']} |"
        for e in entries
    ]
    return "\n".join(lines) + "\n"
