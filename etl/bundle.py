"""A delivered bundle (a folder or a .zip) and its manifest: the limits a bundle must keep
(member and total sizes, compression ratio), the members it may hold, the manifest's fields and
their checks. Structural problems raise ``BundleRefused``."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from etl.specs import SPECS
from registry.contract.columns import FORMAT, FORMAT_VERSION
from registry.core.errors import BundleRefused, NoInput, Problem

SITE_RE = re.compile(r"^[A-Z0-9_-]{1,32}$")
DEFAULT_CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class Manifest:
    """A bundle's manifest, checked."""

    site_id: str
    exported_at: dt.datetime
    data_cutoff: dt.date
    mode: str
    source_system: str | None


@dataclass
class FileHeader:
    """What the header of one CSV told us."""

    columns: list[str]  # normalised names, in file order
    ignored: list[str] = field(default_factory=list)  # unknown extra columns (warned)
    identifiers_dropped: list[str] = field(default_factory=list)  # never stored
    present: bool = True  # False: an optional file the bundle does not have


@dataclass(frozen=True)
class Limits:
    """How big a bundle may be, checked before anything is read (a zip's declared sizes, which
    the zip reader also holds each member to; a folder's file sizes). The defaults pass a
    1,000,000-patient export (about 3 GB of CSV, compressing 5-20x) and refuse a zip bomb at
    once. Overrides (``Resources.limits``, from the environment): ``REGISTRY_MAX_MEMBER_BYTES``,
    ``REGISTRY_MAX_BUNDLE_BYTES``, ``REGISTRY_MAX_COMPRESSION_RATIO``,
    ``REGISTRY_MAX_LINE_CHARS`` (one line of a CSV file, checked while reading: a line is never
    held whole beyond the limit)."""

    member_bytes: int = 16 * 2**30
    bundle_bytes: int = 48 * 2**30
    ratio: float = 200.0  # uncompressed / compressed, for members over ratio_floor
    ratio_floor: int = 1 << 20
    line_chars: int = 1 << 20  # one physical line of a CSV file (a real row is under 1 KB)

    @classmethod
    def of(cls, overrides: dict[str, float]) -> Limits:
        """The defaults with the overrides the settings carry (``Resources.limits``)."""
        d = cls()
        return cls(
            member_bytes=int(overrides.get("member_bytes", d.member_bytes)),
            bundle_bytes=int(overrides.get("bundle_bytes", d.bundle_bytes)),
            ratio=float(overrides.get("ratio", d.ratio)),
            line_chars=int(overrides.get("line_chars", d.line_chars)),
        )


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


# what a bundle may hold; nothing else in it is read
KNOWN_MEMBERS = ("manifest.json", *(spec.filename for spec in SPECS.values()))


class Bundle:
    """Read access to a bundle's members, folder or zip alike."""

    def __init__(self, path: str | Path, limits: Limits | None = None) -> None:
        self.path = Path(path)
        self.limits = limits or Limits()
        try:
            exists = self.path.exists()
        except OSError as exc:  # a name too long, a path through a file, ...
            raise NoInput(f"bundle path cannot be read ({exc.strerror})") from None
        if not exists:
            raise NoInput(f"bundle {self.path} does not exist")
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        self.member_hashes: dict[str, str] = {}  # filled by sha256()
        self.member_lines: dict[str, int] = {}  # physical lines after the header, by sha256()
        self._names: list[str] = []
        if self.path.is_file():
            self._open_zip()
        else:
            self._open_folder()

    def _open_zip(self) -> None:
        """A .zip: readable, each member once, no path outside it, the members' sizes and
        compression within the limits (nothing is extracted)."""
        try:
            self._zip = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile:
            raise BundleRefused(
                [Problem(self.path.name, "not a folder and not a readable .zip file")]
            ) from None
        names = [n for n in self._zip.namelist() if not n.endswith("/")]
        self._refuse_ambiguous(names)
        unsafe = [n for n in names if n.startswith(("/", "\\")) or ".." in n.replace("\\", "/").split("/")]
        if unsafe:  # nothing is ever extracted, but such an archive is hostile or broken
            raise BundleRefused(
                [
                    Problem(
                        self.path.name,
                        f"{len(unsafe)} member(s) with an absolute path or '..': refused, nothing read",
                    )
                ]
            )
        manifests = [n for n in names if n.rsplit("/", 1)[-1] == "manifest.json"]
        if len(manifests) == 1 and "/" in manifests[0]:
            self._prefix = manifests[0].rsplit("/", 1)[0] + "/"
        self._names = names
        self._check_sizes(
            {
                m: (info.file_size, info.compress_size)
                for m in KNOWN_MEMBERS
                if (info := self._info(m)) is not None
            }
        )

    def _open_folder(self) -> None:
        """A folder: no member linking outside it, the members' sizes within the limits."""
        root = self.path.resolve()
        for member in KNOWN_MEMBERS:
            target = self.path / member
            if target.is_symlink() and not target.resolve().is_relative_to(root):
                raise BundleRefused(
                    [Problem(member, "a link to a file outside the bundle's folder: refused, not followed")]
                )
        self._names = [p.name for p in self.path.iterdir() if p.is_file()]
        self._check_sizes(
            {m: (size, size) for m in KNOWN_MEMBERS if (size := self._file_size(m)) is not None}
        )

    def _refuse_ambiguous(self, names: list[str]) -> None:
        """Two members of one name (or of names equal but for case: one file on a case-folding
        disk) make "the" file ambiguous: a zip reader takes the last one without a word."""
        folded = Counter(n.casefold() for n in names)
        twice = sorted({n for n in names if folded[n.casefold()] > 1})
        if twice:
            raise BundleRefused(
                [
                    Problem(
                        self.path.name,
                        f"{len(twice)} member name(s) appear more than once (case ignored), e.g. "
                        f"{twice[0][:80]!r}: which one is the export is ambiguous",
                    )
                ],
                hint="re-create the archive with each file once",
            )
        encrypted = [i.filename for i in self._zip.infolist() if i.flag_bits & 0x1] if self._zip else []
        if encrypted:
            raise BundleRefused(
                [Problem(encrypted[0][:80], "encrypted (password-protected) member: cannot be read")],
                hint="deliver the archive without a password (the transport protects it)",
            )

    @contextlib.contextmanager
    def archive_errors(self, member: str) -> Iterator[None]:
        """Reading a zip member checks its CRC, its size and its compression only as it is read:
        a corrupt member is a refusal (65) naming it, never a traceback."""
        try:
            yield
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, zipfile.LargeZipFile) as exc:
            if self._zip is None:
                raise
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise BundleRefused(
                [Problem(member, f"corrupt zip member ({reason}): nothing of the bundle was loaded")],
                hint="re-create the archive from the site's export and deliver it again",
            ) from None

    def _info(self, member: str) -> zipfile.ZipInfo | None:
        assert self._zip is not None
        try:
            return self._zip.getinfo(self._prefix + member)
        except KeyError:
            return None

    def _file_size(self, member: str) -> int | None:
        p = self.path / member
        return p.stat().st_size if p.is_file() else None

    def _check_sizes(self, sizes: dict[str, tuple[int, int]]) -> None:
        """Refuse (65) before reading when a member or the bundle is larger than the limits allow,
        or a zip member expands implausibly (a zip bomb)."""
        limits = self.limits
        problems = []
        for member, (size, packed) in sizes.items():
            if size > limits.member_bytes:
                problems.append(
                    Problem(member, f"{_gib(size)} uncompressed, over the {_gib(limits.member_bytes)} limit")
                )
            elif size > limits.ratio_floor and size > limits.ratio * max(packed, 1):
                problems.append(
                    Problem(
                        member,
                        f"expands {size / max(packed, 1):.0f}-fold ({_gib(packed)} -> {_gib(size)}), "
                        f"over the {limits.ratio:.0f}-fold limit: not a plausible export (a zip bomb?)",
                    )
                )
        total = sum(size for size, _ in sizes.values())
        if not problems and total > limits.bundle_bytes:
            problems.append(
                Problem(
                    self.path.name, f"{_gib(total)} uncompressed, over the {_gib(limits.bundle_bytes)} limit"
                )
            )
        if problems:
            raise BundleRefused(
                problems,
                hint="limits: REGISTRY_MAX_MEMBER_BYTES, REGISTRY_MAX_BUNDLE_BYTES, "
                "REGISTRY_MAX_COMPRESSION_RATIO (docs/operations.md)",
            )

    def unexpected_members(self) -> int:
        """How many members are neither the manifest nor an input file (ignored, never read)."""
        known = {self._prefix + m for m in KNOWN_MEMBERS} if self._zip is not None else set(KNOWN_MEMBERS)
        return sum(1 for n in self._names if n not in known)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exists(self, member: str) -> bool:
        if self._zip is not None:
            return (self._prefix + member) in self._zip.namelist()
        return (self.path / member).is_file()

    def size(self, member: str) -> int | None:
        """The member's uncompressed size in bytes (None: not in the bundle)."""
        if self._zip is not None:
            info = self._info(member)
            return info.file_size if info is not None else None
        return self._file_size(member)

    def open(self, member: str) -> IO[bytes]:
        if self._zip is not None:
            return self._zip.open(self._prefix + member)
        return (self.path / member).open("rb")

    def sha256(self) -> str:
        """Hash of the bundle's content (manifest and the input files, in a fixed order); the
        same pass records each member's own hash in ``member_hashes``."""
        h = hashlib.sha256()
        for member in KNOWN_MEMBERS:
            if not self.exists(member):
                continue
            h.update(member.encode() + b"\0")
            own = hashlib.sha256()
            # every member read whole here, first: a corrupt one is refused before anything else
            lines, last = 0, b"\n"
            with self.archive_errors(member), self.open(member) as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
                    own.update(block)
                    lines += block.count(b"\n")
                    last = block[-1:]
            self.member_lines[member] = max(lines - (last == b"\n"), 0)  # the header's line ends one
            self.member_hashes[member] = own.hexdigest()
        return h.hexdigest()


# ISO 8601 calendar dates as the contract writes them: four, two and two ASCII digits
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
EARLIEST_CUTOFF = dt.date(1990, 1, 1)  # no registry export is older than the registry's drugs
CLOCK_SKEW = dt.timedelta(hours=1)  # an export stamped this far in the future is still accepted


def _plausible(
    exported_at: dt.datetime, cutoff: dt.date, refuse: Callable[[str], BundleRefused], now: dt.datetime | None
) -> None:
    """A manifest whose dates cannot be true is refused, naming the field: an export from the
    future would make every later delivery of the site "older"; a cutoff after the export day or
    before 1990 would make every report and every night fail."""
    now = now or dt.datetime.now(dt.UTC)
    if exported_at > now + CLOCK_SKEW:
        stamp = now.isoformat(timespec="seconds")
        raise refuse(f"'exported_at' {exported_at.isoformat()} is in the future (now {stamp})")
    if cutoff > exported_at.date():
        raise refuse(f"'data_cutoff' {cutoff} is after the export day ('exported_at' {exported_at.date()})")
    if cutoff < EARLIEST_CUTOFF:
        raise refuse(f"'data_cutoff' {cutoff} is before {EARLIEST_CUTOFF}: not a plausible export")


def read_manifest(bundle: Bundle, now: dt.datetime | None = None) -> Manifest:
    """The bundle's manifest, checked against the format and for plausible dates (``now``: the
    clock, for tests); ``BundleRefused`` (65) otherwise."""

    def refuse(problem: str) -> BundleRefused:
        return BundleRefused([Problem("manifest.json", problem)])

    if not bundle.exists("manifest.json"):
        raise refuse("missing")
    try:
        with bundle.archive_errors("manifest.json"), bundle.open("manifest.json") as fh:
            data = json.loads(fh.read(1 << 20).decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise refuse(f"not valid UTF-8 JSON ({exc})") from None
    if not isinstance(data, dict):
        raise refuse("must be a JSON object")
    if data.get("format") != FORMAT:
        raise refuse(f"'format' must be {FORMAT!r}, found {data.get('format')!r}")
    version = data.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise refuse(f"'format_version' {version!r} is not supported (this registry reads {FORMAT_VERSION})")
    site = data.get("site_id")
    if not isinstance(site, str) or not SITE_RE.match(site):
        raise refuse("'site_id' must be 1-32 characters of A-Z 0-9 _ -")
    try:
        exported_at = dt.datetime.fromisoformat(str(data.get("exported_at")))
    except ValueError:
        raise refuse("'exported_at' must be an ISO 8601 timestamp with offset") from None
    if exported_at.tzinfo is None:
        raise refuse("'exported_at' must carry a UTC offset (e.g. 2026-06-30T22:00:00+02:00)")
    cutoff_text = str(data.get("data_cutoff"))
    try:
        if not ISO_DATE.fullmatch(cutoff_text):
            raise ValueError
        cutoff = dt.date.fromisoformat(cutoff_text)
    except ValueError:
        raise refuse("'data_cutoff' must be an ISO date YYYY-MM-DD") from None
    _plausible(exported_at, cutoff, refuse, now)
    mode = data.get("mode", "full")
    if mode not in ("full", "incremental"):
        raise refuse(f"'mode' must be 'full' or 'incremental', found {mode!r}")
    source = data.get("source_system")
    return Manifest(site, exported_at, cutoff, mode, str(source) if source is not None else None)
