"""`registry synth` and `registry demo`: synthetic data and the whole pipeline on it."""

from __future__ import annotations

import click

from registry.cli.base import Context, cli, handle_errors, pass_ctx
from registry.core.errors import UsageError


@cli.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str))
@click.option("--patients", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--site", default="SYNTH-01", show_default=True)
@click.option("--dirty", is_flag=True, help="Inject a few percent of invalid rows.")
@click.option("--cutoff", type=click.DateTime(["%Y-%m-%d"]), help="Data cutoff (default 2026-06-30).")
@pass_ctx
@handle_errors
def synth(ctx: Context, out: str, patients: int, seed: int, site: str, dirty: bool, cutoff) -> None:
    """Write a synthetic, realistic export bundle (no real patient) to folder OUT.

    Example: registry synth --out bundle --patients 100000 --dirty
    """
    from etl.bundle import SITE_RE
    from etl.synth import DEFAULT_CUTOFF, write_bundle

    if not SITE_RE.match(site):
        raise click.BadParameter("1-32 characters of A-Z 0-9 _ -", param_hint="--site")
    progress = None
    if ctx.interactive:

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
    if ctx.interactive:
        click.echo("", err=True)
    injected = sum(truth["injected"].values())
    click.echo(f"wrote {out}: {patients} patients" + (f", {injected} injected bad rows" if dirty else ""))


@cli.command()
@click.option("--out", default="demo", show_default=True, type=click.Path(file_okay=False, path_type=str))
@click.option("--patients", type=click.IntRange(min=50), default=1000, show_default=True)
@click.option("--yes", is_flag=True, help="Replace the registry a previous demo left in OUT.")
@pass_ctx
@handle_errors
def demo(ctx: Context, out: str, patients: int, yes: bool) -> None:
    """The whole pipeline on synthetic data: bundle, SQLite registry, ETL, derivations, report.

    It starts from a fresh registry in OUT; one already there is replaced only with --yes.

    Example: registry demo --out demo --yes
    """
    from pathlib import Path

    from jobs.demo import run_demo

    if (Path(out) / "registry.db").exists() and not yes:
        raise UsageError(f"{out}/registry.db exists (an earlier demo)", hint="add --yes to replace it")
    result = run_demo(out, patients=patients, log=ctx.note)
    click.echo(result.headline)
