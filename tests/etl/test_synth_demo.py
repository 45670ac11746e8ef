"""The synthetic generator and the demo."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from etl.synth import _category_counts, write_bundle
from jobs.demo import run_demo
from registry.cli import cli


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.csv")):
        h.update(f.read_bytes())
    return h.hexdigest()


def test_generator_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    write_bundle(tmp_path / "a", patients=120, seed=4, dirty=True)
    write_bundle(tmp_path / "b", patients=120, seed=4, dirty=True)
    write_bundle(tmp_path / "c", patients=120, seed=5, dirty=True)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_dirty_rows_are_extra_rows_that_change_no_clean_row(tmp_path: Path) -> None:
    write_bundle(tmp_path / "clean", patients=300, seed=3)
    truth = write_bundle(tmp_path / "dirty", patients=300, seed=3, dirty=True)
    assert sum(truth["quarantine"].values()) > 10 and truth["extra_patients"] > 0
    for f in sorted((tmp_path / "clean").glob("*.csv")):
        clean = f.read_text(encoding="utf-8").splitlines()
        dirty = (tmp_path / "dirty" / f.name).read_text(encoding="utf-8").splitlines()
        missing = set(clean) - set(dirty)
        assert not missing, (f.name, sorted(missing)[:3])


def test_default_shape_has_the_published_group_sizes() -> None:
    counts = _category_counts(1000)
    assert (counts["G1"], counts["G2"], counts["G3"], counts["G4"]) == (136, 161, 209, 69)
    assert sum(counts.values()) == 1000


def test_demo_runs_end_to_end_and_twice(tmp_path: Path) -> None:
    first = run_demo(tmp_path / "demo", patients=200)
    assert first.report_html.exists() and first.quarantined > 0
    assert (
        "Outcomes after the index autologous transplant"
        in (first.report_html.parent / "outcomes.html").read_text()
    )
    data = json.loads(first.report_json.read_text())
    assert data["n"] > 80 and set(data["groups"]) == {"G1", "G2", "G3", "G4"}
    assert "median OS from 2nd line" in first.headline and "G1 vs G2" in first.headline
    assert "published" in first.headline and "55.3" in first.headline  # side by side with the paper
    second = run_demo(tmp_path / "demo", patients=200)  # safe to run twice: same numbers
    assert second.data["groups"] == first.data["groups"]


def test_doctor_is_healthy_on_the_demo_registry_with_the_config_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from registry.cli import cli

    result = run_demo(tmp_path / "demo", patients=60)
    config = tmp_path / "demo" / "registry.toml"
    assert f"export REGISTRY_CONFIG={config.resolve()}" in result.headline
    for name in ("REGISTRY_DATABASE_URL", "REGISTRY_PSEUDONYM_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGISTRY_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["doctor", "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.output)["healthy"], res.output


def test_synth_cli_writes_a_valid_bundle(tmp_path: Path, cli_env) -> None:  # type: ignore[no-untyped-def]
    res = CliRunner().invoke(cli, ["synth", "--out", str(tmp_path / "s"), "--patients", "60"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["etl", "validate", str(tmp_path / "s"), "--format", "json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{") :])
    assert summary["quarantined"] == 0 and summary["status"] == "validated"


def test_clean_default_bundle_gives_the_published_group_sizes(tmp_path: Path) -> None:
    from etl.pipeline import run_bundle
    from registry.cohorts.definition import load_definition
    from registry.cohorts.sql import read_cohort
    from registry.db.database import make_engine
    from registry.db.setup import prepare
    from registry.reports.study import build_study_report

    write_bundle(tmp_path / "b", patients=1000, seed=1, labs=False)
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    prepare(engine)
    assert run_bundle(engine, tmp_path / "b", b"k" * 20).quarantined == 0
    defn = load_definition("lenalidomide-relapse")
    data = build_study_report(read_cohort(engine, defn), defn).data
    engine.dispose()
    assert {g: v["n"] for g, v in data["groups"].items()} == {"G1": 136, "G2": 161, "G3": 209, "G4": 69}
    # survival shaped like the paper: OS from the 2nd line G1 > G3 > G2 > G4, medians near 55/49/38
    med = {g: v["endpoints"]["os_2l"]["median_months"] for g, v in data["groups"].items()}
    assert 45 < med["G1"] < 65 and 30 < med["G2"] < 46 and 40 < med["G3"] < 58 and med["G4"] < med["G2"]
