"""``make demo`` / ``registry demo``: synthetic bundle -> SQLite registry -> ETL -> derivations ->
study report, with a short table of the headline numbers."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.core.config import DEMO_PSEUDONYM_KEY
from registry.db.database import make_engine
from registry.db.setup import prepare


@dataclass(frozen=True)
class DemoResult:
    """What the demo wrote and the headline it prints."""

    report_html: Path
    report_json: Path
    data: dict[str, Any]
    quarantined: int
    seconds: float
    headline: str


def run_demo(
    out: str | Path, patients: int = 1000, log: Callable[[str], None] = lambda m: None
) -> DemoResult:
    """The whole pipeline on synthetic data in folder ``out``: a realistic bundle, a fresh
    SQLite registry, the load and derivation, the lenalidomide study report (HTML and JSON)
    and a headline table next to the published figures. ``log`` receives the steps."""
    from etl.pipeline import run_bundle
    from etl.synth import write_bundle
    from registry.cohorts.definition import load_definition
    from registry.cohorts.sql import create_view
    from registry.reports.inputs import outcomes_report, study_report
    from registry.reports.outcomes import release_outcomes
    from registry.reports.outcomes_render import render_outcomes
    from registry.reports.release import release

    t0 = time.perf_counter()
    out = Path(out)
    bundle = out / "bundle"
    db = out / "registry.db"
    if bundle.exists():
        shutil.rmtree(bundle)
    for p in (db, out / "registry.db.lock"):
        p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    log(f"1/4 writing a synthetic bundle of {patients} patients (with some invalid rows)")
    write_bundle(bundle, patients=patients, dirty=True)
    engine = make_engine(f"sqlite:///{db}")
    try:
        log(f"2/4 creating the registry {db}")
        prepare(engine)
        log("3/4 loading the bundle (validate, quarantine, pseudonymise, load, derive)")
        summary = run_bundle(engine, bundle, DEMO_PSEUDONYM_KEY.encode())
        log("4/4 building the lenalidomide study report and the transplant-outcomes report")
        defn = load_definition("lenalidomide-relapse")
        with engine.begin() as conn:
            create_view(conn, defn)
        rep = study_report(engine, defn)
        outcomes = release_outcomes(outcomes_report(engine).data)
    finally:
        engine.dispose()
    html_path = out / "report.html"
    json_path = out / "report.json"
    html_path.write_text(release(rep, "html"), encoding="utf-8")
    json_path.write_text(release(rep, "json"), encoding="utf-8")
    (out / "outcomes.html").write_text(render_outcomes(outcomes, "html"), encoding="utf-8")
    _write_config(out, db)
    seconds = time.perf_counter() - t0
    headline = _headline(rep.data, summary.quarantined, html_path, seconds, db)
    return DemoResult(html_path, json_path, rep.data, summary.quarantined, seconds, headline)


def _write_config(out: Path, db: Path) -> Path:
    """``OUT/registry.toml``: the demo registry's URL and the demo's pseudonym key (synthetic
    data only; a real deployment's key never sits in a file beside its registry), so that
    ``REGISTRY_CONFIG=OUT/registry.toml registry doctor`` (and every other command) works."""
    path = out / "registry.toml"
    path.write_text(
        "# written by `registry demo`: the demo registry and the key its synthetic pseudonyms use\n"
        "[registry]\n"
        f'database_url = "sqlite:///{db.resolve()}"\n'
        f'pseudonym_key = "{DEMO_PSEUDONYM_KEY}"\n',
        encoding="utf-8",
    )
    return path


def _headline(data: dict[str, Any], quarantined: int, html: Path, seconds: float, db: Path) -> str:
    # the founding study's published figures, from the definition's [published] table
    published = data.get("published") or {"groups": {}, "note": ""}
    figures = {g: (v["n"], v["median_months"]) for g, v in published["groups"].items()}

    def months(v: float | None) -> str:
        return "not reached" if v is None else f"{v:.1f}"

    lines = [
        "",
        f"Lenalidomide study, data cutoff {data['data_cutoff']}: {data['n']} patients "
        f"(published: {sum(n for n, _ in figures.values())})",
        f"{'':<6}{'n':>12}  {'median OS from 2nd line, months':>46}",
        f"{'group':<6}{'published':>10}{'here':>6}  {'published':>10}  {'here (95% CI)':<30}label",
    ]
    for g, v in data["groups"].items():
        s = v["endpoints"].get("os_2l", {})
        ci = s.get("median_ci_months", [None, None])
        here = f"{months(s.get('median_months'))} ({months(ci[0])}-{months(ci[1])})"
        pub_n, pub_median = figures.get(g, (None, None))
        pub_text = "n/r" if pub_median is None else f"{pub_median:.1f}"
        pub_n_text = "-" if pub_n is None else str(pub_n)
        lines.append(f"{g:<6}{pub_n_text:>10}{v['n']:>6}  {pub_text:>10}  {here:<30}{v['label']}")
    for pair in (["G1", "G2"], ["G1", "G3"]):
        p = next(
            (x["p"] for x in data["logrank"] if x["endpoint"] == "os_2l" and x["groups"] == pair),
            None,
        )
        lines.append(
            f"log-rank OS from 2nd line, {pair[0]} vs {pair[1]}: p = " + ("n/a" if p is None else f"{p:.4f}")
        )
    lines.append(f"published: {published['note']}; n/r = not reported")
    config = db.parent / "registry.toml"
    lines.append(f"rows quarantined by the ETL: {quarantined}; to look at them and at the registry:")
    lines.append("  . .venv/bin/activate   # puts `registry` on the PATH (from the project folder)")
    lines.append(f"  export REGISTRY_CONFIG={config.resolve()}   # the demo's database and its key")
    lines.append("  registry doctor && registry etl quarantine && registry etl runs")
    lines.append(f"report: {html.resolve()}  ({seconds:.1f} s)")
    lines.append(
        "transplant outcomes (OS, PFS, relapse and NRM; response from the laboratory series, DOR, TTNT): "
        f"{html.resolve().parent / 'outcomes.html'}"
    )
    lines.append("  a patient's series and timeline: registry patient show KEY --format html > patient.html")
    return "\n".join(lines)
