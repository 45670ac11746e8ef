"""Configuration precedence and clean errors for bad configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from registry.cli import cli
from registry.core.config import load_settings, redact_url
from registry.core.errors import EXIT_CONFIG, EXIT_UNAVAILABLE, ConfigError


def test_default_is_sqlite_file_in_working_directory(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    s = load_settings(environ={})
    assert s.database_url == "sqlite:///registry.db"
    assert s.database_url_source == "default"
    assert s.pseudonym_key is None


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "r.toml"
    cfg.write_text('[registry]\ndatabase_url = "sqlite:///file.db"\npseudonym_key = "k" \n')
    with pytest.raises(ConfigError, match="shorter than"):
        load_settings(config_file=cfg, environ={})
    cfg.write_text('[registry]\ndatabase_url = "sqlite:///file.db"\n')
    assert load_settings(config_file=cfg, environ={}).database_url == "sqlite:///file.db"
    env = {"REGISTRY_DATABASE_URL": "sqlite:///env.db"}
    assert load_settings(config_file=cfg, environ=env).database_url == "sqlite:///env.db"
    assert load_settings("sqlite:///flag.db", cfg, env).database_url == "sqlite:///flag.db"


def test_postgres_scheme_uses_psycopg3() -> None:
    s = load_settings("postgresql://u@h/db", environ={})
    assert s.database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_the_common_postgres_url_forms_are_accepted(scheme: str) -> None:
    s = load_settings(environ={"REGISTRY_DATABASE_URL": f"{scheme}://u:pw@h:5433/db"})
    assert s.database_url == "postgresql+psycopg://u:pw@h:5433/db"


def test_an_unknown_scheme_is_still_refused() -> None:
    with pytest.raises(ConfigError, match="unsupported database URL"):
        load_settings("mysql://u@h/db", environ={})


def test_password_is_redacted() -> None:
    assert redact_url("postgresql+psycopg://u:secret@h/db") == "postgresql+psycopg://u:***@h/db"


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--database-url", "mysql://x/y", "db", "current"], EXIT_CONFIG, "unsupported database"),
        (
            ["--database-url", "sqlite:////no/such/dir/r.db", "db", "current"],
            EXIT_CONFIG,
            "does not exist",
        ),
        (["--config", "/no/such.toml", "db", "current"], EXIT_CONFIG, "does not exist"),
        (
            ["--database-url", "postgresql://postgres@127.0.0.1:1/x", "db", "current"],
            EXIT_UNAVAILABLE,
            "unreachable",
        ),
    ],
)
def test_bad_configuration_is_one_clear_line(args: list[str], code: int, text: str) -> None:
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == code, res.output
    assert text in res.output
    assert "Traceback" not in res.output


def test_bad_toml_is_reported(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("database_url = [unclosed")
    res = CliRunner().invoke(cli, ["--config", str(cfg), "db", "current"])
    assert res.exit_code == EXIT_CONFIG
    assert "not valid TOML" in res.output


@pytest.mark.parametrize(
    "command",
    [
        ["patient", "show", "abc"],
        ["report", "study", "lenalidomide-relapse"],
        ["etl", "runs"],
        ["etl", "quarantine"],
        ["cohort", "export", "lenalidomide-relapse", "--out", "x.csv"],
        ["cohort", "views"],
        ["derive"],
    ],
)
def test_unmigrated_or_unreachable_database_is_a_clear_error(command: list[str], tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    res = CliRunner().invoke(cli, ["--database-url", empty, *command])
    assert res.exit_code == EXIT_CONFIG and "registry db upgrade" in res.output, res.output
    res = CliRunner().invoke(cli, ["--database-url", "postgresql://postgres@127.0.0.1:1/x", *command])
    assert res.exit_code == EXIT_UNAVAILABLE and "unreachable" in res.output, res.output
    assert "Traceback" not in res.output
