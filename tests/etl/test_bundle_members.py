"""What a bundle holds beyond its files: a zip member with '..' or an absolute path refuses the
bundle (nothing read), a folder member linking outside the folder is not followed, and other
files are ignored with a warning that counts them without naming them."""

from __future__ import annotations

import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from etl.bundle import Bundle, Limits
from etl.pipeline import run_bundle
from registry.core.config import resources_from
from registry.core.errors import BundleRefused, ConfigError
from registry.db.database import make_engine
from registry.db.setup import prepare
from tests.conftest import TEST_KEY
from tests.etl.bundles import write_bundle


def _zip(folder: Path, out: Path, extra: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, p.name)
        for name, data in extra.items():
            zf.writestr(name, data)
    return out


@pytest.mark.parametrize(
    "name", ["../../evil.txt", "/etc/cron.d/evil", "data/../../evil.csv", "..\\\\evil.txt"]
)
def test_a_zip_with_a_path_traversal_member_is_refused(tmp_path: Path, name: str) -> None:
    z = _zip(write_bundle(tmp_path / "b"), tmp_path / "b.zip", {name: b"x"})
    with pytest.raises(BundleRefused) as err:
        Bundle(z)
    assert "absolute path or '..'" in str(err.value.problems[0].problem)
    assert not (tmp_path / "evil.txt").exists()


def test_a_folder_member_linking_outside_is_not_followed(tmp_path: Path) -> None:
    folder = write_bundle(tmp_path / "b")
    secret = tmp_path / "elsewhere.csv"
    secret.write_text((folder / "treatments.csv").read_text())
    (folder / "treatments.csv").unlink()
    (folder / "treatments.csv").symlink_to(secret)
    with pytest.raises(BundleRefused) as err:
        Bundle(folder)
    assert err.value.problems[0].file == "treatments.csv" and "not followed" in err.value.problems[0].problem
    # a link inside the folder is just another way to name a file of the bundle
    (folder / "treatments.csv").unlink()
    (folder / "copy.dat").write_text(secret.read_text())
    (folder / "treatments.csv").symlink_to(folder / "copy.dat")
    Bundle(folder).close()


def test_unexpected_files_are_ignored_and_counted_not_named(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    prepare(engine)
    folder = write_bundle(tmp_path / "b")
    (folder / "notes-for-mr-smith.txt").write_text("not for the registry")
    z = _zip(folder, tmp_path / "b.zip", {"extra/readme.md": b"x"})
    s = run_bundle(engine, z, TEST_KEY.encode())
    assert s.status == "succeeded"
    (warning,) = [w for w in s.warnings if "unexpected" in w]
    assert warning.startswith("2 unexpected file(s)") and "smith" not in warning
    engine.dispose()


def test_a_zip_bomb_is_refused_at_once_in_constant_memory(tmp_path: Path) -> None:
    folder = write_bundle(tmp_path / "b")
    header = (folder / "treatments.csv").read_bytes().splitlines()[0] + b"\n"
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            if p.name != "treatments.csv":
                zf.write(p, p.name)
        with zf.open("treatments.csv", "w") as fh:  # 64 MiB of one repeated row, ~1000-fold
            fh.write(header)
            row = b"R1,MRN-0001,lenalidomide,2020-01-01,2020-02-01,,,,\n" * 16384
            for _ in range(64 * 2**20 // len(row)):
                fh.write(row)
    tracemalloc.start()
    t = time.perf_counter()
    with pytest.raises(BundleRefused) as err:
        Bundle(bomb)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    (problem,) = err.value.problems
    assert problem.file == "treatments.csv" and "zip bomb" in problem.problem
    assert seconds < 2 and peak < 20 * 2**20  # nothing was decompressed


def test_size_limits_are_configurable_and_checked_before_reading(tmp_path: Path) -> None:
    folder = write_bundle(tmp_path / "b")
    Bundle(folder).close()  # the defaults pass an ordinary bundle
    with pytest.raises(BundleRefused) as err:
        Bundle(folder, Limits.of({"member_bytes": 300}))  # treatments.csv is 484 bytes
    assert {p.file for p in err.value.problems} >= {"treatments.csv"}
    assert "over the" in err.value.problems[0].problem and "REGISTRY_MAX_MEMBER_BYTES" in (
        err.value.hint or ""
    )
    with pytest.raises(ConfigError, match="must be numbers"):
        resources_from({"REGISTRY_MAX_MEMBER_BYTES": "lots"})
    assert resources_from({"REGISTRY_MAX_MEMBER_BYTES": "300"}).limits == {"member_bytes": 300.0}


def test_the_command_reads_the_limits_from_its_settings(cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The environment is read once, into the settings the command passes down: the same
    bundle loads, and is refused with the member over the limit named, when the variable is
    set (nothing below the settings reads it)."""
    from click.testing import CliRunner

    from registry.cli import cli

    folder = write_bundle(tmp_path / "b")
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    refused = runner.invoke(cli, ["etl", "run", str(folder)], env={"REGISTRY_MAX_MEMBER_BYTES": "300"})
    assert refused.exit_code == 65 and "treatments.csv" in refused.output, refused.output
    bad = runner.invoke(cli, ["etl", "run", str(folder)], env={"REGISTRY_MAX_MEMBER_BYTES": "lots"})
    assert bad.exit_code == 78 and "must be numbers" in bad.output
    assert runner.invoke(cli, ["etl", "run", str(folder)]).exit_code == 0
