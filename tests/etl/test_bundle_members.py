"""What a bundle holds beyond its files: a zip member with '..' or an absolute path refuses the
bundle (nothing read), a folder member linking outside the folder is not followed, and other
files are ignored with a warning that counts them without naming them."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from etl.extract import Bundle
from etl.pipeline import run_bundle
from registry.core.errors import BundleRefused
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
