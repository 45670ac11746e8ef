"""File modes of what the registry writes. Everything is private to the registry's account
(the CLI's umask 077: files 0600, folders 0700). Reports may be shared with one group
(``REGISTRY_REPORT_GROUP`` or ``report_group`` in the config file): then report files become
0640 and their folders 0750, owned by that group — never the registry, its lock or a
per-patient export."""

from __future__ import annotations

import grp
import os
from pathlib import Path

from registry.core.errors import ConfigError


def group_id(name: str) -> int:
    """The id of group ``name`` (78 when there is no such group)."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(
            f"report group {name!r} does not exist on this machine",
            hint="create it (groupadd) or unset REGISTRY_REPORT_GROUP / report_group",
        ) from None


def share_reports(paths: list[Path], group: str | None) -> None:
    """Give report files (0640) and folders (0750) to ``group``; nothing when no group is set."""
    if not group:
        return
    gid = group_id(group)
    for path in paths:
        os.chown(path, -1, gid)
        os.chmod(path, 0o750 if path.is_dir() else 0o640)


def share_tree(folder: Path, group: str | None) -> None:
    """``share_reports`` for a folder and everything in it."""
    if group:
        share_reports([folder, *sorted(folder.rglob("*"))], group)
