"""The ``registry`` command: thin click commands grouped by noun. Each parses options, calls
one library function and renders its result. Errors derived from ``RegistryError`` become one
clear line on stderr and a documented exit code (docs/operations.md) — here, in one place."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from registry import __version__
from registry.core.config import Settings, load_settings
from registry.core.errors import RegistryError

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    def __init__(self, database_url: str | None, config_file: str | None) -> None:
        self._database_url = database_url
        self._config_file = config_file
        self._settings: Settings | None = None
        self._engine = None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self._database_url, self._config_file)
        return self._settings

    def engine(self):
        from registry.db.database import make_engine

        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
        return self._engine

    def ready_engine(self):
        """The engine, after checking the database is reachable (69) and migrated (78)."""
        from registry.db.database import require_current_schema

        engine = self.engine()
        require_current_schema(engine)
        return engine


def exit_with(exc: RegistryError) -> None:
    """One line (and a hint) on stderr, then the error's documented exit code."""
    click.echo(f"error: {exc.message}", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)
    sys.exit(exc.exit_code)


def handle_errors(fn: F) -> F:
    """Turn user errors into one line on stderr and their exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RegistryError as exc:
            exit_with(exc)

    return wrapper  # type: ignore[return-value]


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="registry")
@click.option(
    "--database-url",
    metavar="URL",
    help="Database URL (default: $REGISTRY_DATABASE_URL, config file, sqlite:///registry.db).",
)
@click.option(
    "--config",
    "config_file",
    metavar="FILE",
    help="TOML config file (default: $REGISTRY_CONFIG or ./registry.toml if present).",
)
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, config_file: str | None) -> None:
    """Multiple myeloma transplant registry.

    \b
    Example:
      registry db upgrade && registry etl run exports/site-a-2026-06-30.zip
    """
    ctx.obj = Context(database_url, config_file)
    ctx.call_on_close(ctx.obj.close)


pass_ctx = click.make_pass_decorator(Context)


# --------------------------------------------------------------------------- db
@cli.group()
def db() -> None:
    """Create and migrate the registry database."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_ctx
@handle_errors
def db_upgrade(ctx: Context, revision: str) -> None:
    """Migrate the schema to REVISION (default head) and load the drug vocabulary.

    Example: registry db upgrade
    """
    from registry.db.database import migration_state, upgrade
    from registry.db.setup import seed_reference_data

    engine = ctx.engine()
    upgrade(engine, revision)
    state = migration_state(engine)
    click.echo(f"database at revision {state.current}")
    if state.up_to_date:
        from registry.derive.run import derivation_status

        remapped = seed_reference_data(engine)
        if remapped:
            click.echo(f"drug vocabulary: {remapped} stored treatment row(s) re-mapped", err=True)

        with engine.connect() as conn:
            message = derivation_status(conn).message
        if message:
            click.echo(f"warning: {message}", err=True)


@db.command("downgrade")
@click.argument("revision")
@pass_ctx
@handle_errors
def db_downgrade(ctx: Context, revision: str) -> None:
    """Migrate the schema down to REVISION ('base' removes everything).

    Example: registry db downgrade base
    """
    from registry.db.database import downgrade, migration_state

    engine = ctx.engine()
    downgrade(engine, revision)
    click.echo(f"database at revision {migration_state(engine).current or 'base'}")


@db.command("current")
@pass_ctx
@handle_errors
def db_current(ctx: Context) -> None:
    """Print the database's migration revision and the code's head.

    Example: registry db current
    """
    from registry.db.database import migration_state

    state = migration_state(ctx.engine())
    flag = "up to date" if state.up_to_date else "needs `registry db upgrade`"
    click.echo(f"current: {state.current or 'none'}  head: {state.head}  ({flag})")


# --------------------------------------------------------------------------- doctor
@cli.command()
@pass_ctx
@handle_errors
def doctor(ctx: Context) -> None:
    """Check configuration, database reachability and migration state.

    Never prints the pseudonym key, only whether it is set.

    Example: REGISTRY_DATABASE_URL=postgresql://postgres@127.0.0.1/registry registry doctor
    """
    from etl.doctor import diagnose

    report = diagnose(ctx.settings)
    for name, value, ok in report.lines:
        mark = "ok " if ok else "!! "
        click.echo(f"{mark}{name:<18} {value}")
    if not report.healthy:
        sys.exit(report.exit_code)


# --------------------------------------------------------------------------- etl
@cli.group()
def etl() -> None:
    """Validate and load hospital export bundles."""


def _progress():
    """Row counter on a terminal's stderr; nothing when not a TTY (cron, pipes)."""
    if not sys.stderr.isatty():
        return None

    def report(name: str, rows: int) -> None:
        unit = "patients" if name == "derivation" else "rows"
        click.echo(f"\r  {name:<16} {rows:>12,} {unit}", err=True, nl=False)

    return report


def _print_counts(summary) -> None:
    click.echo(f"{'file':<16}{'read':>10}{'loaded':>10}{'quarant.':>10}{'warn':>6}{'changed':>9}")
    for name, c in summary.files.items():
        click.echo(f"{name:<16}{c.read:>10}{c.loaded:>10}{c.quarantined:>10}{c.warnings:>6}{c.changed:>9}")


@etl.command("run")
@click.argument("bundle", type=click.Path(path_type=str))
@click.option("--force", is_flag=True, help="Load even if older than the site's last bundle.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=50_000, show_default=True)
@click.option("--no-derive", is_flag=True, help="Skip the derivation stage after loading.")
@click.option("--demo-key", is_flag=True, hidden=True)
@pass_ctx
@handle_errors
def etl_run(
    ctx: Context,
    bundle: str,
    force: bool,
    fmt: str,
    chunk_rows: int,
    no_derive: bool,
    demo_key: bool,
) -> None:
    """Load BUNDLE (a folder or .zip) in one transaction; bad rows are quarantined.

    With --format json, stdout holds only the JSON summary; progress and warnings go to
    stderr. Exit codes: 0 loaded (quarantined rows included), 65 bundle refused,
    66 no such bundle, 69 database unreachable, 75 another run holds the lock, 78 config.

    Example: registry etl run exports/site-a-2026-06-30.zip
    """
    from etl.pipeline import run_bundle

    key = ctx.settings.require_key(demo=demo_key)
    summary = run_bundle(
        ctx.engine(),
        bundle,
        key,
        force=force,
        chunk_rows=chunk_rows,
        progress=_progress(),
        derive=not no_derive,
    )
    if sys.stderr.isatty():
        click.echo("", err=True)
    for w in summary.warnings:
        click.echo(f"warning: {w}", err=True)
    if fmt == "json":
        echo_json(summary.to_json())
        return
    click.echo(f"run {summary.run_id}: {summary.status}: {summary.message}")
    if summary.status != "unchanged":
        _print_counts(summary)
    if summary.derived_patients is not None:
        click.echo(f"derived {summary.derived_patients} patient(s)")


@etl.command("validate")
@click.argument("bundle", type=click.Path(path_type=str))
@click.option(
    "--quarantine-csv",
    type=click.Path(dir_okay=False, path_type=str),
    help="Write the rows that would be quarantined (one line per reason).",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
@handle_errors
def etl_validate(ctx: Context, bundle: str, quarantine_csv: str | None, fmt: str) -> None:
    """Dry run: every check of `etl run`, nothing written to the registry.

    Example: registry etl validate exports/site-a/ --quarantine-csv problems.csv
    """
    from pathlib import Path

    from etl.pipeline import run_bundle
    from etl.runs import write_quarantine_csv

    key = ctx.settings.require_key(demo=True)
    summary = run_bundle(ctx.engine(), bundle, key, dry_run=True, progress=_progress())
    if quarantine_csv:
        write_quarantine_csv(summary.quarantine, Path(quarantine_csv))
    for w in summary.warnings:
        click.echo(f"warning: {w}", err=True)
    if fmt == "json":
        echo_json(summary.to_json())
        return
    click.echo(summary.message)
    _print_counts(summary)


@etl.command("runs")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
@handle_errors
def etl_runs(ctx: Context, limit: int, fmt: str) -> None:
    """The run ledger, newest first.

    Example: registry etl runs --limit 5
    """
    from etl.runs import list_runs

    runs = list_runs(ctx.ready_engine(), limit)
    if fmt == "json":
        echo_json(runs)
        return
    click.echo(
        f"{'run':>5} {'status':<10} {'site':<12} {'cutoff':<11} {'read':>9} "
        f"{'loaded':>9} {'quar.':>6}  message"
    )
    for r in runs:
        click.echo(
            f"{r['run_id']:>5} {r['status']:<10} {r['site'] or '-':<12} "
            f"{r['data_cutoff'] or '-':<11} {r['read']:>9} {r['loaded']:>9} "
            f"{r['quarantined']:>6}  {r['message'] or ''}"
        )
        if r["unmapped_drugs"]:
            names = ", ".join(f"{name!r} ({n})" for name, n in list(r["unmapped_drugs"].items())[:10])
            more = len(r["unmapped_drugs"]) - 10
            click.echo(f"{'':>6}unmapped drug names: {names}" + (f" and {more} more" if more > 0 else ""))


@etl.command("quarantine")
@click.option("--run", "run_id", type=int, help="Run id (default: the latest with quarantine).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), help="CSV file (default: stdout).")
@pass_ctx
@handle_errors
def etl_quarantine(ctx: Context, run_id: int | None, out: str | None) -> None:
    """Quarantined rows with every reason, as CSV (one line per reason).

    Example: registry etl quarantine --run 12 --out run12-problems.csv
    """
    from pathlib import Path

    from etl.runs import iter_quarantine, write_quarantine_csv

    rows = iter_quarantine(ctx.ready_engine(), run_id)
    if out:
        n = write_quarantine_csv(rows, Path(out))
        click.echo(f"wrote {n} reason line(s) to {out}", err=True)
    else:
        write_quarantine_csv(rows, sys.stdout)


# --------------------------------------------------------------------------- derive / patient
@cli.command()
@click.option("--all", "all_patients", is_flag=True, help="Re-derive every patient.")
@pass_ctx
@handle_errors
def derive(ctx: Context, all_patients: bool) -> None:
    """Derive lines, regimens, maintenance and relapses (changed patients, or --all).

    Example: registry derive --all
    """
    from registry.derive.run import derive_pending

    engine = ctx.ready_engine()
    progress = None
    if sys.stderr.isatty():

        def progress(done: int, total: int) -> None:
            click.echo(f"\r  derived {done:,}/{total:,} patients", err=True, nl=False)

    res = derive_pending(engine, all_patients=all_patients, progress=progress)
    if sys.stderr.isatty():
        click.echo("", err=True)
    click.echo(
        f"derived {res.patients} patient(s) under rules {res.rules_version}; cleared {res.retired} retired; "
        f"parameters: {json.dumps(res.parameters)}"
    )
    from registry.derive.run import derivation_status

    with engine.connect() as conn:
        message = derivation_status(conn).message
    if message:
        click.echo(f"warning: {message}", err=True)


@cli.group()
def patient() -> None:
    """Look at one patient's registry record."""


@patient.command("show")
@click.argument("patient_key")
@pass_ctx
@handle_errors
def patient_show(ctx: Context, patient_key: str) -> None:
    """Timeline of one patient: diagnosis, transplants, lines, regimens, relapses, follow-up.

    PATIENT_KEY is the pseudonym (or a unique prefix of it).

    Example: registry patient show 3f29a1c0
    """
    from registry.derive.timeline import patient_timeline

    head, entries = patient_timeline(ctx.ready_engine(), patient_key)
    for k, v in head.items():
        click.echo(f"{k:<26} {v}")
    click.echo("")
    for e in entries:
        click.echo(f"{e.date.isoformat()}  {e.kind:<10} {e.text}")


# --------------------------------------------------------------------------- cohorts / reports
@cli.group()
def cohort() -> None:
    """Cohort definitions, per-patient analysis tables and analysts' views."""


@cohort.command("list")
def cohort_list() -> None:
    """List the built-in cohort definitions.

    Example: registry cohort list
    """
    from registry.cohorts.definition import builtin_names, load_definition

    for name in builtin_names():
        d = load_definition(name)
        click.echo(f"{name} (v{d.version}): {d.title}")


@cohort.command("export")
@click.argument("name")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), help="Data cutoff to use.")
@pass_ctx
@handle_errors
def cohort_export(ctx: Context, name: str, out: str, as_of) -> None:
    """Write the per-patient analysis table of cohort NAME as CSV.

    Example: registry cohort export lenalidomide-relapse --out patients.csv
    """
    from registry.cohorts.definition import load_definition
    from registry.cohorts.sql import read_cohort
    from registry.reports.render import to_csv
    from registry.reports.study import StudyReport, patient_table

    defn = load_definition(name)
    table = patient_table(read_cohort(ctx.ready_engine(), defn, as_of.date() if as_of else None), defn)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(to_csv(StudyReport({}, table, {})))
    click.echo(f"wrote {len(table)} patient(s) to {out}", err=True)


@cohort.command("views")
@pass_ctx
@handle_errors
def cohort_views(ctx: Context) -> None:
    """(Re)create one SQL view per built-in cohort for analysts (cohort_<name>).

    Example: registry cohort views && psql -c 'SELECT * FROM cohort_lenalidomide_relapse'
    """
    from registry.cohorts.definition import builtin_names, load_definition
    from registry.cohorts.sql import create_view

    with ctx.ready_engine().begin() as conn:
        for name in builtin_names():
            click.echo(f"view {create_view(conn, load_definition(name))}")


@cli.group()
def report() -> None:
    """Reports for clinicians and for release outside the registry."""


@report.command("study")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["html", "json", "csv"]), default="json")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), help="Output file (default: stdout).")
@click.option("--min-cell", type=click.IntRange(min=1), help="Suppress counts below N.")
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), help="Data cutoff to use.")
@click.option("--endpoint", "endpoints", multiple=True, help="Endpoint(s) to compare.")
@click.option(
    "--landmark-days",
    type=click.IntRange(min=0),
    help="Landmark analysis from the index transplant (for transplant-origin endpoints).",
)
@pass_ctx
@handle_errors
def report_study(
    ctx: Context,
    name: str,
    fmt: str,
    out: str | None,
    min_cell: int | None,
    as_of,
    endpoints: tuple[str, ...],
    landmark_days: int | None,
) -> None:
    """Study report NAME as JSON (stdout by default), HTML or the per-patient CSV.

    Example: registry report study lenalidomide-relapse --format html --out report.html
    """
    from registry.cohorts.definition import load_definition
    from registry.reports.render import to_csv, to_html, to_json
    from registry.reports.study import build_study_report
    from registry.reports.suppress import suppress

    defn = load_definition(name)
    rep = build_study_report(
        ctx.ready_engine(),
        defn,
        as_of=as_of.date() if as_of else None,
        endpoints=list(endpoints) or None,
        landmark_days=landmark_days,
    )
    data = suppress(rep.data, min_cell) if min_cell else rep.data
    if fmt == "json":
        body = to_json(data)
    elif fmt == "html":
        body = to_html(rep, data)
    else:
        if min_cell:
            raise RegistryError(
                "the per-patient table cannot leave the registry with --min-cell",
                hint="use --format json or html for released reports",
            )
        body = to_csv(rep)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(body)
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(body)


# --------------------------------------------------------------------------- synth / demo
@cli.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str))
@click.option("--patients", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--site", default="SYNTH-01", show_default=True)
@click.option("--dirty", is_flag=True, help="Inject a few percent of invalid rows.")
@click.option("--cutoff", type=click.DateTime(["%Y-%m-%d"]), help="Data cutoff (default 2026-06-30).")
def synth(out: str, patients: int, seed: int, site: str, dirty: bool, cutoff) -> None:
    """Write a synthetic, realistic export bundle (no real patient) to folder OUT.

    Example: registry synth --out bundle --patients 100000 --dirty
    """
    from etl.extract import SITE_RE
    from etl.synth import DEFAULT_CUTOFF, write_bundle

    if not SITE_RE.match(site):
        raise click.BadParameter("1-32 characters of A-Z 0-9 _ -", param_hint="--site")
    progress = None
    if sys.stderr.isatty():

        def progress(n: int) -> None:
            click.echo(f"\r  {n:,}/{patients:,} patients", err=True, nl=False)

    truth = write_bundle(
        out,
        patients=patients,
        seed=seed,
        site=site,
        dirty=dirty,
        cutoff=cutoff.date() if cutoff else DEFAULT_CUTOFF,
        progress=progress,
    )
    if sys.stderr.isatty():
        click.echo("", err=True)
    injected = sum(truth["injected"].values())
    click.echo(f"wrote {out}: {patients} patients" + (f", {injected} injected bad rows" if dirty else ""))


@cli.command()
@click.option("--out", default="demo", show_default=True, type=click.Path(file_okay=False, path_type=str))
@click.option("--patients", type=click.IntRange(min=50), default=1000, show_default=True)
def demo(out: str, patients: int) -> None:
    """The whole pipeline on synthetic data: bundle, SQLite registry, ETL, derivations, report.

    Safe to run twice (it starts from a fresh registry in OUT each time).

    Example: registry demo --out demo
    """
    from etl.demo import run_demo

    try:
        result = run_demo(out, patients=patients, log=lambda m: click.echo(m, err=True))
    except RegistryError as exc:
        exit_with(exc)
    click.echo(result.headline)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except RegistryError as exc:  # configuration errors raised outside a command body
        exit_with(exc)


if __name__ == "__main__":
    main()
