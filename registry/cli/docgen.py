"""Generated documentation: docs/data-model.md (from the models), docs/input-contract.md (from
the Pandera contract), docs/cli.md (from every command's --help), and the generated sections
of docs/operations.md (the exit codes, from ``registry.core.errors``) and docs/derivations.md
(the parameters, from ``registry.derive.params``). ``python -m registry.cli.docgen`` rewrites
them; a test fails when any is stale."""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy import Table

from etl.schema import schema
from etl.specs import FILE_ORDER, SPECS
from registry.contract import FILE_NAMES
from registry.contract.columns import FORMAT, FORMAT_VERSION, IDENTIFIER_NAMES
from registry.contract.rules import CATALOGUE
from registry.core.errors import EXIT_CODES
from registry.db.dictionary import dictionary
from registry.db.models import Base
from registry.db.views import VIEWS
from registry.derive.params import parameter_table

DOCS = Path(__file__).resolve().parents[2] / "docs"

TABLE_NOTES = {
    "sites": "Delivering centres; `last_exported_at` refuses stale bundles.",
    "drugs": "The drug vocabulary (registry/data/drugs.csv), loaded by `registry db upgrade`.",
    "drug_synonyms": "Brand names and spellings (lower case) mapping to a drug.",
    "etl_runs": "The run ledger: every ETL run, refused ones included.",
    "quarantine": "Rejected rows with every reason; ids pseudonymised, identifier columns never read.",
    "input_findings": "Advisory findings on loaded rows (rule, column, value, message); keys are pseudonyms.",
    "patients": (
        "One row per patient; `patient_key` is the first 128 bits of HMAC-SHA256 of site, file and source id."
    ),
    "transplants": "Stem-cell transplants as delivered.",
    "treatments": "Raw drug exposure rows as delivered, linked to the vocabulary when known.",
    "disease_events": "Response assessments and documented progressions/relapses.",
    "labs": "Laboratory series (optional): M-protein, free light chains, immunofixation, marrow, chemistry.",
    "follow_up": "Last contact and vital status (one row per patient).",
    "derivation_runs": "Each derivation run with the parameter values it used.",
    "exposures": "Derived: same-drug rows merged across short gaps.",
    "exposure_sources": "Derived: which treatment rows each exposure came from.",
    "lines_of_therapy": "Derived: IMWG lines of therapy.",
    "regimens": "Derived: regimens within lines with their phase.",
    "regimen_exposures": "Derived: the exposures each regimen contains (`continued` = carried over).",
    "transplant_roles": "Derived: index / tandem / salvage / additional / allogeneic.",
    "relapses": "Derived: documented progressions with lenalidomide refractoriness attributes.",
    "relapse_refractoriness": "Derived: refractory or not to each drug at each relapse.",
    "response_assessments": "Derived: each assessment of a line's response judged from the laboratory series.",
    "patient_summaries": "Derived: one row per patient with the facts cohorts start from.",
}


def _table_md(t: Table) -> str:
    lines = [
        f"## `{t.name}`",
        "",
        TABLE_NOTES.get(t.name, ""),
        "",
        "| column | type | null | key | meaning |",
        "|---|---|---|---|---|",
    ]
    meaning = {
        e["column"]: e["description"] for e in dictionary() if e["kind"] == "table" and e["object"] == t.name
    }
    for c in t.columns:
        key = []
        if c.primary_key:
            key.append("PK")
        for fk in c.foreign_keys:
            key.append(f"FK {fk.target_fullname}")
        lines.append(
            f"| `{c.name}` | {c.type.compile()} | {'yes' if c.nullable else 'no'} | {', '.join(key)} "
            f"| {meaning.get(c.name, '').replace('|', '/')} |"
        )
    idx = sorted(i.name for i in t.indexes if i.name)
    if idx:
        lines += ["", "Indexes: " + ", ".join(f"`{i}`" for i in idx)]
    return "\n".join(lines) + "\n"


def data_model_markdown() -> str:
    """docs/data-model.md: every table of the models with its columns, keys and indexes."""
    head = (
        "# Data model\n\nGenerated from the models in `registry/db/models/` (each column's description is its `doc`) by `python -m registry.cli.docgen`; "
        "a test fails if this file is stale. Every clinical table carries `patient_key`. "
        "Loaded tables carry lineage (`run_id`, `source_row`) and currency (`is_current`, "
        "`retired_run_id`). Dates are ISO dates (SQLite stores them as text).\n"
    )
    views = [
        "# Views for analysts\n",
        "Created and kept current by `registry db upgrade` (`registry/db/views.py`), with the same "
        "names and columns on SQLite and PostgreSQL (where every column carries this description as "
        "a comment). Current records only: no lineage, no retired history, no quarantine, and the "
        "year of birth instead of the date.\n",
    ]
    for view in VIEWS:
        views += [f"## `{view.name}`\n", view.description + "\n", "| column | meaning |", "|---|---|"]
        views += [f"| `{c}` | {d} |" for c, d in view.columns]
        views.append("")
    tables = "\n".join(_table_md(t) for t in Base.metadata.sorted_tables)
    return head + "\n" + "\n".join(views) + "\n# Tables\n\n" + tables


def input_contract_markdown() -> str:
    """docs/input-contract.md: the bundle, the rule catalogue and every file's columns."""
    out = [
        "# Input contract (export format version 1)\n",
        "Generated from the contract (`registry/contract/`: the column catalogue the Pandera schemas are built from, and the rule catalogue) by "
        "`python -m registry.cli.docgen`; a test fails if this file is stale. It is what the registry "
        "enforces: the contract between a site's extraction job and the registry's ETL.\n",
        "## The bundle\n",
        f"A folder or `.zip` with `manifest.json` and "
        f"{', '.join(SPECS[n].filename for n in FILE_ORDER if not SPECS[n].optional)}; optionally "
        f"{', '.join(SPECS[n].filename for n in FILE_ORDER if SPECS[n].optional)} (a bundle without an "
        "optional file loads as before and retires nothing of it). "
        f"`manifest.json` needs `format` = `{FORMAT}`, `format_version` = {FORMAT_VERSION}, `site_id` "
        "(1-32 of A-Z 0-9 _ -), `exported_at` (ISO timestamp with offset), `data_cutoff` (ISO date); "
        "optional `mode` (`full` default, or `incremental`) and `source_system`. Nothing else in a "
        "bundle is read: other files are ignored with a warning that counts them (never names them).\n",
        "CSV: UTF-8 (BOM tolerated), comma, RFC 4180 quotes, CRLF or LF. Headers match "
        "case-insensitively after trimming; order is free; unknown columns are ignored with a "
        "warning; columns that look like direct identifiers (e.g. "
        + ", ".join(f"`{n}`" for n in sorted(IDENTIFIER_NAMES)[:10])
        + ", or any name containing name/address/phone/email/ssn) are dropped unread. Values are trimmed; "
        "empty = not recorded; coded values are case-insensitive. Row numbers count the header as row 1.\n",
        "## Structural problems (the whole bundle is refused, nothing changes)\n",
        "Missing file or manifest, bad manifest, unsupported format version, missing required "
        "column, repeated column, not UTF-8, unreadable CSV (e.g. a broken quote), empty file; a "
        "zip member with an absolute path or `..` in it; a file of a folder bundle that is a link "
        "to a file outside the folder (never followed). Exit code 65.\n",
        "## Row problems\n",
        "The rule catalogue (`registry/contract/rules.py`; a rule's files follow from the files' columns, except a file's own rules). A `blocking` rule quarantines the row with every "
        "reason found; the rest of the bundle loads. An `advisory` rule loads the row and records "
        "a finding (table `input_findings`, counted per file as `findings` in the run summary).\n",
        "| rule | severity | files | meaning |",
        "|---|---|---|---|",
    ]
    out += [
        f"| `{r.code}` | {r.severity} | {', '.join(r.files) if r.files != FILE_NAMES else 'every file'} | {r.doc} |"
        for r in CATALOGUE.values()
    ]
    out.append("")
    for name in FILE_ORDER:
        c = SPECS[name]
        file_schema = schema(c)
        out += [
            f"## `{c.filename}`\n",
            f"Pandera schema `{file_schema.name}` (built from this table; columns in `registry/contract/files.py`, handling in `etl/specs/{name}.py`); source id "
            f"`{c.id_column}` (pseudonym namespace `{c.namespace}`).\n",
            "| column | required | kind | allowed values (and accepted synonyms) |",
            "|---|---|---|---|",
        ]
        for col in c.columns:
            assert col.name in file_schema.columns, col.name
            if col.codes:
                syn: dict[str, list[str]] = {}
                for s, canon in col.codes.items():
                    if s != canon.lower():
                        syn.setdefault(canon, []).append(s)
                vals = ", ".join(
                    f"`{v}`" + (f" ({', '.join(syn[v])})" if v in syn else "") for v in col.allowed
                )
            else:
                vals = col.description
            out.append(f"| `{col.name}` | {'yes' if col.required else 'no'} | {col.kind} | {vals} |")
        out.append("")
        if name == "labs":
            out += lab_units_markdown()
    return "\n".join(out)


def lab_units_markdown() -> list[str]:
    """Each laboratory test's canonical unit, the other units accepted (with the factor into the
    canonical one) and its plausible maximum, from ``registry.core.labs``."""
    from registry.core.labs import TESTS

    rows = [
        "Units of `labs.csv` (any case; a value in another unit is quarantined with `lab_unit`):\n",
        "| test | unit stored | also accepted (x factor) | plausible up to | below the limit (`<x`, `not detected`) |",
        "|---|---|---|---|---|",
    ]
    for t in TESTS:
        unit = "positive / negative" if t.qualitative else t.unit
        other = ", ".join(f"{u} (x {f:.6g})" for u, f in t.conversions.items()) or "–"
        top = f"{t.maximum:,.6g}" if t.maximum is not None else "–"
        rows.append(
            f"| `{t.code}` | {unit} | {other} | {top} | {'read as 0' if t.below_limit_is_zero else 'refused'} |"
        )
    return [*rows, ""]


def exit_codes_markdown() -> str:
    """The exit-code table of docs/operations.md, from ``registry.core.errors.EXIT_CODES``."""
    rows = ["| code | meaning | what to do |", "|---|---|---|"]
    rows += [f"| {code} | {meaning} | {todo} |" for code, (meaning, todo) in sorted(EXIT_CODES.items())]
    return "\n".join(rows)


def parameters_markdown() -> str:
    """The parameter table of docs/derivations.md, from the derivation parameters."""
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | {default} | {doc} |" for name, default, doc in parameter_table()]
    return "\n".join(rows)


def cli_markdown() -> str:
    """Every command's --help, in the order a reader meets them."""
    import click

    from registry.cli import cli

    out = [
        "# Command-line reference\n",
        "Generated from `registry --help` and each command's help by "
        "`python -m registry.cli.docgen`; a test fails if this file is stale. Exit codes: "
        "`docs/operations.md`.\n",
    ]

    def walk(cmd: click.Command, path: list[str]) -> None:
        ctx = click.Context(
            cmd,
            info_name=" ".join(path),
            help_option_names=["-h", "--help"],
            terminal_width=88,
            max_content_width=88,
        )
        out.extend([f"## `{' '.join(path)}`\n", "```text", cmd.get_help(ctx).rstrip(), "```\n"])
        if isinstance(cmd, click.Group):
            for name in sorted(cmd.commands):
                walk(cmd.commands[name], [*path, name])

    walk(cli, ["registry"])
    return "\n".join(out)


def data_quality_markdown() -> str:
    from registry.quality.checks import CATALOGUE

    out = [
        "# Data quality\n",
        "Generated from the check catalogue (`registry/quality/checks.py`) by "
        "`python -m registry.cli.docgen`; a test fails if this file is stale.\n",
        "Two layers watch the data. Input rules (`docs/input-contract.md`) judge each delivered "
        "row: a `blocking` rule quarantines it, an `advisory` one loads it and records a finding. "
        "The checks below judge the loaded registry (current records only): each counts the "
        "violating rows and the rows it applies to, and fails when the violating percentage "
        "passes its threshold. `registry dq run` stores every check's raw counts, so a changed "
        "threshold is re-applied to old runs without running them again (`registry dq show`); "
        "`registry dq diff` lists the failures that are new, resolved or persisting between two "
        "runs; `registry dq show --check ID --rows` lists a check's violating records by "
        "pseudonymous key with the load run and source row they came from, never with a direct "
        "identifier. `registry nightly` runs the checks every night and puts the summary and the "
        "diff with the previous night in its report set.\n",
        "Statuses: `passed`, `failed`, `not_applicable` (no rows to judge), `error` (the check "
        "itself failed; the others still run). Severities: `fatal` (studies should not be trusted "
        "while it fails), `warning`, `info`. Thresholds can be overridden in the configuration "
        "file:\n",
        "```toml\n[quality.thresholds]\npatients_iss_missing = 10\n```\n",
        "| check | category | severity | threshold % | meaning |",
        "|---|---|---|---:|---|",
    ]
    out += [
        f"| `{c.check_id}` | {c.category} | {c.severity} | {c.threshold:g} | {c.description} |"
        for c in CATALOGUE
    ]
    out += [
        "",
        "## Adding a check",
        "Write a function `(connection) -> (violating, denominator)` (or two counting queries with "
        "`_ratio`) over current records, add a `Check` to `CATALOGUE` with an id, category, "
        "severity, threshold and description, and, when its violations are rows of one table, a "
        "`rows` query giving `record_key, patient_key, run_id, source_row`. Test it on a small "
        "registry with exact counts (`tests/quality/`), then run `python -m registry.cli.docgen`.",
        "",
    ]
    return "\n".join(out)


def replace_section(text: str, name: str, body: str) -> str:
    """Replace what stands between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``."""
    start, end = f"<!-- generated:{name} -->", f"<!-- /generated:{name} -->"
    i, j = text.index(start) + len(start), text.index(end)
    return f"{text[:i]}\n{body}\n{text[j:]}"


def generated_files() -> dict[Path, str]:
    """Every generated file with the text it must have."""
    operations = (DOCS / "operations.md").read_text(encoding="utf-8")
    derivations = (DOCS / "derivations.md").read_text(encoding="utf-8")
    return {
        DOCS / "data-model.md": data_model_markdown(),
        DOCS / "input-contract.md": input_contract_markdown(),
        DOCS / "cli.md": cli_markdown(),
        DOCS / "data-quality.md": data_quality_markdown(),
        DOCS / "operations.md": replace_section(operations, "exit-codes", exit_codes_markdown()),
        DOCS / "derivations.md": replace_section(derivations, "parameters", parameters_markdown()),
    }


def write_all() -> list[Path]:
    """Rewrite every generated file; returns their paths."""
    DOCS.mkdir(exist_ok=True)
    files = generated_files()
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return list(files)


if __name__ == "__main__":
    for p in write_all():
        sys.stdout.write(f"wrote {p}\n")
