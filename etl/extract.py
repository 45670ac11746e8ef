"""Extract: open a bundle (folder or .zip), read and check its manifest, and stream each CSV
in chunks of strings with normalised headers. Structural problems raise ``BundleRefused``."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import itertools
import json
import os
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pandas as pd

from etl.contract import FORMAT, FORMAT_VERSION, looks_like_identifier
from etl.specs import SPECS, FileSpec
from registry.core.errors import BundleRefused, ConfigError, NoInput, Problem

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
    once. Environment overrides: ``REGISTRY_MAX_MEMBER_BYTES``, ``REGISTRY_MAX_BUNDLE_BYTES``,
    ``REGISTRY_MAX_COMPRESSION_RATIO``, ``REGISTRY_MAX_LINE_CHARS`` (one line of a CSV file,
    checked while reading: a line is never held whole beyond the limit)."""

    member_bytes: int = 16 * 2**30
    bundle_bytes: int = 48 * 2**30
    ratio: float = 200.0  # uncompressed / compressed, for members over ratio_floor
    ratio_floor: int = 1 << 20
    line_chars: int = 1 << 20  # one physical line of a CSV file (a real row is under 1 KB)

    @classmethod
    def from_env(cls) -> Limits:
        d = cls()
        try:
            return cls(
                member_bytes=int(os.environ.get("REGISTRY_MAX_MEMBER_BYTES", d.member_bytes)),
                bundle_bytes=int(os.environ.get("REGISTRY_MAX_BUNDLE_BYTES", d.bundle_bytes)),
                ratio=float(os.environ.get("REGISTRY_MAX_COMPRESSION_RATIO", d.ratio)),
                line_chars=int(os.environ.get("REGISTRY_MAX_LINE_CHARS", d.line_chars)),
            )
        except ValueError:
            raise ConfigError(
                "REGISTRY_MAX_MEMBER_BYTES, REGISTRY_MAX_BUNDLE_BYTES, REGISTRY_MAX_COMPRESSION_RATIO and "
                "REGISTRY_MAX_LINE_CHARS must be numbers"
            ) from None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


# what a bundle may hold; nothing else in it is read
KNOWN_MEMBERS = ("manifest.json", *(spec.filename for spec in SPECS.values()))


class Bundle:
    """Read access to a bundle's members, folder or zip alike."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            exists = self.path.exists()
        except OSError as exc:  # a name too long, a path through a file, ...
            raise NoInput(f"bundle path cannot be read ({exc.strerror})") from None
        if not exists:
            raise NoInput(f"bundle {self.path} does not exist")
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        self.member_hashes: dict[str, str] = {}  # filled by sha256()
        self._names: list[str] = []
        if self.path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except zipfile.BadZipFile:
                raise BundleRefused(
                    [Problem(self.path.name, "not a folder and not a readable .zip file")]
                ) from None
            names = [n for n in self._zip.namelist() if not n.endswith("/")]
            unsafe = [
                n for n in names if n.startswith(("/", "\\")) or ".." in n.replace("\\", "/").split("/")
            ]
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
        else:
            root = self.path.resolve()
            for member in KNOWN_MEMBERS:
                target = self.path / member
                if target.is_symlink() and not target.resolve().is_relative_to(root):
                    raise BundleRefused(
                        [
                            Problem(
                                member, "a link to a file outside the bundle's folder: refused, not followed"
                            )
                        ]
                    )
            self._names = [p.name for p in self.path.iterdir() if p.is_file()]
            self._check_sizes(
                {m: (size, size) for m in KNOWN_MEMBERS if (size := self._file_size(m)) is not None}
            )

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
        limits = Limits.from_env()
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
            with self.open(member) as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
                    own.update(block)
            self.member_hashes[member] = own.hexdigest()
        return h.hexdigest()


def read_manifest(bundle: Bundle) -> Manifest:
    """The bundle's manifest, checked against the format; ``BundleRefused`` (65) otherwise."""

    def refuse(problem: str) -> BundleRefused:
        return BundleRefused([Problem("manifest.json", problem)])

    if not bundle.exists("manifest.json"):
        raise refuse("missing")
    try:
        with bundle.open("manifest.json") as fh:
            data = json.loads(fh.read().decode("utf-8-sig"))
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
    try:
        cutoff = dt.date.fromisoformat(str(data.get("data_cutoff")))
    except ValueError:
        raise refuse("'data_cutoff' must be an ISO date YYYY-MM-DD") from None
    mode = data.get("mode", "full")
    if mode not in ("full", "incremental"):
        raise refuse(f"'mode' must be 'full' or 'incremental', found {mode!r}")
    source = data.get("source_system")
    return Manifest(site, exported_at, cutoff, mode, str(source) if source is not None else None)


def _not_utf8(member: str, exc: UnicodeDecodeError) -> BundleRefused:
    utf16 = exc.start == 0 and bytes(exc.object[:2]) in (b"\xff\xfe", b"\xfe\xff")
    what = "UTF-16, not UTF-8" if utf16 else f"not valid UTF-8 (byte offset {exc.start})"
    return BundleRefused([Problem(member, f"{what}; re-export as UTF-8")])


class LineTooLong(Exception):
    """A physical line of a CSV file longer than the limit (raised while reading)."""

    def __init__(self, line: int, limit: int) -> None:
        super().__init__(line, limit)
        self.line, self.limit = line, limit


_LONE_CR = re.compile(r"\r(?!\n)")


def _split_lines(text: str) -> list[str]:
    """Lines with their endings (\n, \r\n, or a lone \r as in old Mac files, like the csv module's
    own reading); the last element is the unfinished rest ("" when the text ends a line). A \r
    at the very end is kept in the rest: its \n may start the next block."""
    body, tail = (text[:-1], "\r") if text.endswith("\r") else (text, "")
    if _LONE_CR.search(body):  # rare: split after lone carriage returns too
        body = _LONE_CR.sub("\r\x00", body)  # mark them, split on the marks below
        parts = [p for chunk in body.split("\x00") for p in _split_lf(chunk)]
        merged: list[str] = []
        for p in parts:  # rejoin the pieces: each ends with \n or \r, except the last
            if merged and not merged[-1].endswith(("\n", "\r")):
                merged[-1] += p
            else:
                merged.append(p)
        if merged and merged[-1].endswith(("\n", "\r")):
            merged.append("")
        merged[-1] += tail
        return merged
    out = _split_lf(body)
    out[-1] += tail
    return out


def _split_lf(text: str) -> list[str]:
    pieces = text.split("\n")
    return [p + "\n" for p in pieces[:-1]] + [pieces[-1]]


def _bounded_lines(fh: io.TextIOWrapper, limit: int, block: int = 1 << 16) -> Iterator[str]:
    """The file's lines, read in blocks with a bound: a line longer than ``limit`` characters
    raises ``LineTooLong`` after at most ``limit + block`` characters were read (memory stays
    bounded). The lines of a block are handed on as a list (C-speed iteration downstream)."""

    def blocks() -> Iterator[list[str]]:
        carry = ""
        number = 0
        while True:
            text = fh.read(block)
            if not text:
                if carry:
                    if len(carry) > limit:
                        raise LineTooLong(number + 1, limit)
                    yield [carry]
                return
            lines = _split_lines(carry + text)
            carry = lines.pop()  # the unfinished last line ("" after a final \n)
            if lines and max(map(len, lines)) > limit:
                longest = max(range(len(lines)), key=lambda i: len(lines[i]))
                raise LineTooLong(number + longest + 1, limit)
            if len(carry) > limit:
                raise LineTooLong(number + len(lines) + 1, limit)
            number += len(lines)
            yield lines

    return itertools.chain.from_iterable(blocks())


def _too_long(member: str, exc: LineTooLong) -> BundleRefused:
    return BundleRefused(
        [Problem(member, f"line {exc.line} is longer than {exc.limit:,} characters")],
        hint="a row of the export is far longer than any real record "
        "(REGISTRY_MAX_LINE_CHARS sets the limit)",
    )


def _text_stream(bundle: Bundle, member: str) -> io.TextIOWrapper:
    # strict UTF-8 (BOM tolerated); newline="" lets the csv layer handle CRLF inside quotes
    return io.TextIOWrapper(bundle.open(member), encoding="utf-8-sig", newline="")


def read_header(bundle: Bundle, contract: FileSpec) -> FileHeader:
    """A file's header, checked (required columns, no repeats, readable UTF-8); unknown and
    identifier-like columns listed. An optional file that is absent reads as not present."""
    member = contract.filename
    if not bundle.exists(member):
        if contract.optional:
            return FileHeader(columns=[], present=False)
        raise BundleRefused([Problem(member, "missing")])
    try:
        with _text_stream(bundle, member) as fh:
            header = next(csv.reader(_bounded_lines(fh, Limits.from_env().line_chars)), None)
    except LineTooLong as exc:
        raise _too_long(member, exc) from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(member, exc) from None
    except csv.Error as exc:
        raise BundleRefused([Problem(member, f"unreadable CSV header ({exc})")]) from None
    if not header:
        raise BundleRefused([Problem(member, "empty file: no header row")])
    cols = [h.strip().lower() for h in header]
    seen = Counter(cols)
    dupes = sorted(c for c, n in seen.items() if n > 1)
    if dupes:
        raise BundleRefused([Problem(member, f"repeated column(s) {dupes[:10]}")])
    missing = [c for c in contract.required if c not in seen]
    if missing:
        hint = None
        if len(cols) == 1 and any(d in cols[0] for d in ";\t|"):
            hint = "the file seems to use another delimiter; the contract asks for commas"
        raise BundleRefused([Problem(member, f"missing required column(s) {missing}")], hint=hint)
    known = {c.name for c in contract.columns}
    result = FileHeader(columns=cols)
    for c in cols:
        if c in known:
            continue
        if looks_like_identifier(c):
            result.identifiers_dropped.append(c)
        else:
            result.ignored.append(c)
    return result


@dataclass
class Chunk:
    """A chunk of rows of one file, and its malformed records."""

    frame: pd.DataFrame  # well-formed rows, all strings, index = source row number
    malformed: list[tuple[int, int]]  # (row number, field count) of rows with a wrong count


def iter_chunks(
    bundle: Bundle, contract: FileSpec, header: FileHeader, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[Chunk]:
    """Yield chunks of the file: contract columns only (a missing optional column is added
    empty), values trimmed. Row numbers count the header as row 1. A record with more or
    fewer fields than the header is returned as malformed (it is quarantined, not guessed).
    An optional file the bundle does not have yields nothing."""
    if not header.present:
        return
    member = contract.filename
    wanted = [c.name for c in contract.columns]
    width = len(header.columns)
    positions = {c: i for i, c in enumerate(header.columns)}
    row_number = 1
    try:
        with _text_stream(bundle, member) as fh:
            reader = csv.reader(_bounded_lines(fh, Limits.from_env().line_chars), strict=True)
            next(reader, None)  # header
            while True:
                records: list[list[str]] = []
                numbers: list[int] = []
                malformed: list[tuple[int, int]] = []
                for rec in reader:
                    if not rec or (len(rec) == 1 and rec[0].strip() == "" and width > 1):
                        continue  # blank line
                    row_number += 1
                    if len(rec) != width:
                        malformed.append((row_number, len(rec)))
                    else:
                        records.append(rec)
                        numbers.append(row_number)
                    if len(records) + len(malformed) >= chunk_rows:
                        break
                if not records and not malformed:
                    return
                frame = (
                    pd.DataFrame(records, columns=header.columns, dtype=object)
                    if records
                    else pd.DataFrame(columns=header.columns, dtype=object)
                )
                out = pd.DataFrame(index=pd.Index(numbers, dtype="int64"))
                for col in wanted:
                    if col in positions:
                        out[col] = frame[col].str.strip().to_numpy() if len(frame) else []
                    else:
                        out[col] = ""
                out = out.astype(object)
                yield Chunk(out, malformed)
    except LineTooLong as exc:
        raise _too_long(member, exc) from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(member, exc) from None
    except csv.Error as exc:
        raise BundleRefused([Problem(member, f"unreadable CSV near row {row_number + 1} ({exc})")]) from None
