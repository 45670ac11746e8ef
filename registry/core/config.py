"""Configuration: command line > environment > optional TOML file > defaults.

The one module that reads the environment: ``load_settings`` builds one ``Settings`` (the
database, the pseudonym key, data-quality thresholds, the report group and the run's
``Resources``: worker counts and bundle limits) that the command line passes down; nothing
below reads a variable. The pseudonym key is read from ``REGISTRY_PSEUDONYM_KEY`` (or the
config file) and is never written to the database or to logs.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from registry.core.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///registry.db"
ENV_DATABASE_URL = "REGISTRY_DATABASE_URL"
ENV_PSEUDONYM_KEY = "REGISTRY_PSEUDONYM_KEY"
ENV_REPORT_GROUP = "REGISTRY_REPORT_GROUP"
ENV_CONFIG_FILE = "REGISTRY_CONFIG"
ENV_NEW_PSEUDONYM_KEY = "REGISTRY_NEW_PSEUDONYM_KEY"
ENV_WORKERS = {"derive": "REGISTRY_DERIVE_WORKERS", "load": "REGISTRY_LOAD_WORKERS"}
ENV_LIMITS = {
    "member_bytes": "REGISTRY_MAX_MEMBER_BYTES",
    "bundle_bytes": "REGISTRY_MAX_BUNDLE_BYTES",
    "ratio": "REGISTRY_MAX_COMPRESSION_RATIO",
    "line_chars": "REGISTRY_MAX_LINE_CHARS",
}
DEFAULT_CONFIG_FILE = "registry.toml"
# The demo runs without a configured key; its pseudonyms are for synthetic data only.
DEMO_PSEUDONYM_KEY = "demo-key-synthetic-data-only"
MIN_KEY_LENGTH = 16


@dataclass(frozen=True)
class Resources:
    """What a run may use: worker processes (None: the machine's cores) and bundle limits
    overriding the defaults (``etl.bundle.Limits``: member_bytes, bundle_bytes, ratio,
    line_chars). The library's functions take one; the defaults are every production default."""

    load_workers: int | None = None
    derive_workers: int | None = None
    limits: dict[str, float] = field(default_factory=dict)

    def workers(self, kind: str) -> int:
        """Worker processes for ``kind`` (``load``, ``derive``): as set, else the cores."""
        return workers_or_cores(self.load_workers if kind == "load" else self.derive_workers)


def workers_or_cores(setting: int | None) -> int:
    """Worker processes: as set, else the machine's cores."""
    return setting if setting else (os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    """The configuration in force and where each value came from (never the key's value in output)."""

    database_url: str
    database_url_source: str
    pseudonym_key: str | None = None
    pseudonym_key_source: str | None = None
    config_file: str | None = None
    # data-quality thresholds overriding the catalogue's ([quality.thresholds] in the TOML file)
    dq_thresholds: dict[str, float] = field(default_factory=dict)
    # the group reports are shared with (0640); None: reports are private like everything else
    report_group: str | None = None
    resources: Resources = field(default_factory=Resources)
    # the new key of a re-keying (REGISTRY_NEW_PSEUDONYM_KEY; never on a command line)
    new_pseudonym_key: str | None = field(default=None, repr=False)

    def require_key(self, *, demo: bool = False) -> bytes:
        if self.pseudonym_key:
            return self.pseudonym_key.encode("utf-8")
        if demo:
            return DEMO_PSEUDONYM_KEY.encode("utf-8")
        raise ConfigError(
            "no pseudonym key is configured",
            hint=f"set {ENV_PSEUDONYM_KEY} to the deployment's secret (at least "
            f"{MIN_KEY_LENGTH} characters); it is never stored in the database",
        )

    @property
    def redacted_url(self) -> str:
        return redact_url(self.database_url)


def redact_url(url: str) -> str:
    """Hide a password in a database URL (for doctor output and logs)."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"


def normalise_database_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` (the form most hosting tools print) both mean
    PostgreSQL through psycopg 3; any other URL is returned as it is."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in {"postgresql", "postgres", "postgres+psycopg"}:
        return f"postgresql+psycopg://{rest}"
    return url


def _read_config_file(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    section = data.get("registry", {k: v for k, v in data.items() if k != "quality"})
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [registry] must be a table")
    unknown = set(section) - {"database_url", "pseudonym_key", "report_group"}
    if unknown:
        raise ConfigError(f"config file {path}: unknown keys {sorted(unknown)}")
    quality = data.get("quality", {})
    thresholds = quality.get("thresholds", {}) if isinstance(quality, dict) else None
    if not isinstance(thresholds, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 100 for v in thresholds.values()
    ):
        raise ConfigError(f"config file {path}: [quality.thresholds] must map check ids to percentages 0-100")
    return {**section, "dq_thresholds": {str(k): float(v) for k, v in thresholds.items()}}


def load_settings(
    database_url: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Settings from flags, then the environment, then the TOML file, then defaults;
    ``ConfigError`` (78) for an unreadable file or a bad value."""
    env = os.environ if environ is None else environ
    cfg_path: Path | None = None
    if config_file is not None:
        cfg_path = Path(config_file)
        if not cfg_path.exists():
            raise ConfigError(f"config file {cfg_path} does not exist")
    elif env.get(ENV_CONFIG_FILE):
        cfg_path = Path(env[ENV_CONFIG_FILE])
        if not cfg_path.exists():
            raise ConfigError(f"config file {cfg_path} (from {ENV_CONFIG_FILE}) does not exist")
    elif Path(DEFAULT_CONFIG_FILE).exists():
        cfg_path = Path(DEFAULT_CONFIG_FILE)
    cfg = _read_config_file(cfg_path) if cfg_path else {}

    if database_url:
        url, source = database_url, "--database-url"
    elif env.get(ENV_DATABASE_URL):
        url, source = env[ENV_DATABASE_URL], ENV_DATABASE_URL
    elif cfg.get("database_url"):
        url, source = str(cfg["database_url"]), f"config file {cfg_path}"
    else:
        url, source = DEFAULT_DATABASE_URL, "default"
    url = normalise_database_url(url)
    if not (url.startswith("sqlite") or url.startswith("postgresql")):
        raise ConfigError(
            f"unsupported database URL from {source}: {redact_url(url)!r}",
            hint="use sqlite:///PATH or postgresql://USER@HOST/DB (postgres:// works too)",
        )

    key, key_source = _pseudonym_key(env, cfg, cfg_path)
    return Settings(
        database_url=url,
        database_url_source=source,
        pseudonym_key=key,
        pseudonym_key_source=key_source,
        config_file=str(cfg_path) if cfg_path else None,
        dq_thresholds=dict(cfg.get("dq_thresholds", {})),  # type: ignore[call-overload]
        report_group=env.get(ENV_REPORT_GROUP)
        or (str(cfg["report_group"]) if cfg.get("report_group") else None),
        resources=resources_from(env),
        new_pseudonym_key=env.get(ENV_NEW_PSEUDONYM_KEY) or None,
    )


def _pseudonym_key(
    env: dict[str, str] | os._Environ[str], cfg: dict[str, object], cfg_path: Path | None
) -> tuple[str | None, str | None]:
    """The pseudonym key and where it came from: the environment, else the config file."""
    key: str | None
    if env.get(ENV_PSEUDONYM_KEY):
        key, key_source = env[ENV_PSEUDONYM_KEY], ENV_PSEUDONYM_KEY
    elif cfg.get("pseudonym_key"):
        key, key_source = str(cfg["pseudonym_key"]), f"config file {cfg_path}"
    else:
        key, key_source = None, None
    if key is not None and len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"the pseudonym key from {key_source} is shorter than {MIN_KEY_LENGTH} characters")
    return key, key_source


def resources_from(environ: dict[str, str] | os._Environ[str] | None = None) -> Resources:
    """The run's resources from the environment: REGISTRY_LOAD_WORKERS and
    REGISTRY_DERIVE_WORKERS (whole numbers; anything else: the cores) and the bundle limits
    ``ENV_LIMITS`` (numbers, else ``ConfigError``)."""
    env = os.environ if environ is None else environ

    def workers(kind: str) -> int | None:
        setting = env.get(ENV_WORKERS[kind], "").strip()
        return int(setting) if setting.isdigit() and int(setting) > 0 else None

    limits: dict[str, float] = {}
    for field_, name in ENV_LIMITS.items():
        if env.get(name):
            try:
                limits[field_] = float(env[name])
            except ValueError:
                raise ConfigError(
                    f"{', '.join(ENV_LIMITS.values())} must be numbers ({name} is not)"
                ) from None
    return Resources(load_workers=workers("load"), derive_workers=workers("derive"), limits=limits)
