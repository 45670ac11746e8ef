"""Extract: stream each CSV of a bundle (``etl.bundle``) in chunks of strings with normalised
headers, lines bounded, quoted records handled apart. Structural problems raise
``BundleRefused``."""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from etl.bundle import DEFAULT_CHUNK_ROWS, Bundle, FileHeader
from etl.specs import FileSpec
from registry.contract.columns import looks_like_identifier
from registry.core.errors import BundleRefused, Problem


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


# whitespace (other than line breaks) at the edge of a field: after or before a comma, a quote or
# a line break, or at the start or end of the text
_EDGE_SPACE = re.compile(r'(?:^|[,"\r\n])[^\S\r\n]|[^\S\r\n](?:$|[,"\r\n])')
_OTHER_SPACE = re.compile(r"[^\S \r\n]")  # whitespace other than a plain space or a line break
_SPACE_EDGES = (" ,", ", ", ' "', '" ', " \n", "\n ", " \r", "\r ")


def _may_need_trimming(text: str) -> bool:
    """Whether some field of these complete lines may have whitespace at its edge (a quick test
    with substring searches when the only whitespace is plain spaces; the full pattern else)."""
    if _OTHER_SPACE.search(text):
        return _EDGE_SPACE.search(text) is not None
    return text[:1] == " " or text[-1:] == " " or any(edge in text for edge in _SPACE_EDGES)


def _bounded_lines(fh: io.TextIOWrapper, limit: int, block: int = 1 << 16) -> Iterator[str]:
    """The file's lines, read in blocks with a bound: a line longer than ``limit`` characters
    raises ``LineTooLong`` after at most ``limit + block`` characters were read (memory stays
    bounded)."""
    return itertools.chain.from_iterable(_line_blocks(fh, limit, block))


def _line_blocks(fh: io.TextIOWrapper, limit: int, block: int = 1 << 16) -> Iterator[list[str]]:
    """The file's complete lines, a block at a time (a list each: C-speed iteration downstream;
    see ``_bounded_lines``)."""

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


def _watched(blocks: Iterable[list[str]], padded: list[bool]) -> Iterator[list[str]]:
    """The blocks, setting ``padded[0]`` once a line handed on may have a field with whitespace
    at its edge (then values need trimming; a clean export never does)."""
    for block in blocks:
        if not padded[0] and _may_need_trimming("".join(block)):
            padded[0] = True
        yield block


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
        with bundle.archive_errors(member), _text_stream(bundle, member) as fh:
            header = next(csv.reader(_bounded_lines(fh, bundle.limits.line_chars)), None)
    except LineTooLong as exc:
        raise _too_long(member, exc) from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(member, exc) from None
    except csv.Error as exc:
        raise BundleRefused([Problem(member, f"unreadable CSV header ({exc})")]) from None
    if not header:
        raise BundleRefused([Problem(member, "empty file: no header row")])
    cols = [h.strip().lower() for h in header]
    _check_columns(member, cols, contract)
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


def _check_columns(member: str, cols: list[str], contract: FileSpec) -> None:
    """No column twice, every required one there (with a hint when another delimiter was used)."""
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


@dataclass
class _Fields:
    """A chunk's well-formed records, not yet a frame: records split into fields, then lines
    without quotes still to split (a worker process checking the chunk splits them)."""

    records: list[list[str]]
    lines: list[str]
    numbers: list[int]
    columns: list[str]  # the header's
    wanted: list[str]  # the contract's columns, in order (a missing optional one is empty)
    padded: bool  # some field may have whitespace at its edge: trim

    def frame(self) -> pd.DataFrame:
        """The rows as strings, index = row number. Lines without quotes (nearly every chunk)
        are split by Arrow's CSV reader into Arrow string columns; records read after a quote
        are already fields (object columns)."""
        if self.lines and not self.records:
            columns = _arrow_columns(self.lines, len(self.columns))
            if columns is not None:
                return self._frame(lambda i: columns[i], pd.StringDtype("pyarrow"))
        records = self.records + list(csv.reader(self.lines, strict=True)) if self.lines else self.records
        return self._frame(lambda i: [rec[i] for rec in records], object)

    def _frame(self, column: Callable[[int], Any], dtype: Any) -> pd.DataFrame:
        positions = {c: i for i, c in enumerate(self.columns)}  # (a repeated name: its last place)
        out = pd.DataFrame(index=pd.Index(self.numbers, dtype="int64"))
        for col in self.wanted:
            if col not in positions:
                out[col] = pd.array([""] * len(out), dtype=dtype)
                continue
            values = pd.array(column(positions[col]), dtype=dtype)
            if self.padded:
                # every line of the chunk was scanned before it was parsed: trimming is needed
                # only when one of them had whitespace at a field's edge (Python's idea of
                # whitespace, on either path)
                stripped = [v.strip() for v in values.to_numpy(dtype=object)]
                values = pd.array(stripped, dtype=dtype)
            out[col] = values
        return out


def _arrow_columns(lines: list[str], width: int) -> list[pa.Array] | None:
    """Quote-free lines (each with ``width`` fields, every one but the last ending in a line
    break) split into ``width`` Arrow string columns; None if Arrow finds another number of rows
    (then the csv module splits them)."""
    data = "".join(lines).encode()
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(
                column_names=[f"f{i}" for i in range(width)],
                use_threads=False,
                block_size=max(len(data) + 1, 1 << 20),  # one block: a line never straddles two
            ),
            parse_options=pacsv.ParseOptions(quote_char=False, double_quote=False, escape_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types={f"f{i}": pa.string() for i in range(width)},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows != len(lines):
        return None
    return [table.column(i).combine_chunks() for i in range(width)]


class Chunk:
    """A chunk of rows of one file, and its malformed records. Its rows become a frame when
    ``frame`` is first read (where the chunk is checked: a worker process, for a large file)."""

    def __init__(
        self, fields: _Fields, malformed: list[tuple[int, int]], hashes: np.ndarray | None = None
    ) -> None:
        self._fields: _Fields | None = fields
        self._frame: pd.DataFrame | None = None
        self.rows = len(fields.numbers)  # well-formed rows
        self.malformed = malformed  # (row number, field count) of rows with a wrong count
        self.hashes = hashes  # per well-formed row: the keyed hash of its source record

    @property
    def frame(self) -> pd.DataFrame:
        """The well-formed rows, all strings, index = source row number."""
        if self._frame is None:
            assert self._fields is not None
            self._frame, self._fields = self._fields.frame(), None
        return self._frame


@dataclass
class RowHashing:
    """How ``iter_chunks`` hashes records, and which it may skip unread.

    A record on one line is hashed as that line's text; a file's records from its first line
    holding a quote character on are hashed from their fields (such a record may span lines).
    ``skip`` receives the hashes of a block of one-line records and returns which of them to
    skip: they are neither parsed nor returned (the caller counts them)."""

    key: str  # 16 ASCII characters (see etl.transform.row_hash_key)
    skip: Callable[[np.ndarray], np.ndarray] | None = None


def record_texts(lines: list[str]) -> list[str]:
    """The text a quote-free line's record is hashed as: its fields joined by \\x1f, as a
    record read by the csv module is (``_Pending.chunk``). Line endings, quoting and the
    record's place in the file do not change it: a re-ordered, re-encoded or re-quoted
    delivery of the same values gives the same hashes, so its rows are matched as unchanged."""
    return [line.rstrip("\r\n").replace(",", "\x1f") for line in lines]


def line_hashes(texts: list[str], key: str) -> np.ndarray:
    """Keyed 64-bit hashes of texts (SipHash through pandas), as signed integers."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    return pd.util.hash_array(np.array(texts, dtype=object), hash_key=key, categorize=False).view(np.int64)


class _Pending:
    """Records waiting to become a chunk: fields (records after a quote) or lines without
    quotes (split later), row numbers, hashes (None: from the fields)."""

    def __init__(self) -> None:
        self.records: list[list[str]] = []
        self.lines: list[str] = []
        self.numbers: list[int] = []
        self.hashes: list[int | None] = []
        self.malformed: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self.numbers) + len(self.malformed)

    def add(
        self, recs: list[list[str]], numbers: Iterable[int], hashes: Iterable[int | None], width: int
    ) -> None:
        """Records split into fields (read after a quote)."""
        if self.lines:  # records come after every line: keep the order
            self.records += csv.reader(self.lines, strict=True)
            self.lines = []
        self._keep(recs, [len(rec) for rec in recs], list(numbers), list(hashes), width, self.records)

    def add_lines(self, lines: list[str], numbers: list[int], hashes: list[int | None], width: int) -> None:
        """Lines without a quote (one record each, fields counted by their commas; split into
        fields when the chunk's frame is made)."""
        if lines and max(map(len, lines)) > csv.field_size_limit():
            # a field may pass the csv module's limit: split now, so that the error is raised
            # while reading, with its row number
            self.add(list(csv.reader(lines, strict=True)), numbers, hashes, width)
            return
        self._keep(lines, [line.count(",") + 1 for line in lines], numbers, hashes, width, self.lines)

    def _keep(
        self,
        items: list[Any],
        fields: list[int],
        numbers: list[int],
        hashes: list[int | None],
        width: int,
        into: list[Any],
    ) -> None:
        """Keep the items (records or lines) with ``width`` fields, in ``into``; the others are
        malformed (row number and field count)."""
        if all(n == width for n in fields):
            into += items
            self.numbers += numbers
            self.hashes += hashes
            return
        for item, n, row, h in zip(items, fields, numbers, hashes, strict=True):
            if n != width:
                self.malformed.append((row, n))
            else:
                into.append(item)
                self.numbers.append(row)
                self.hashes.append(h)

    def chunk(self, header: FileHeader, wanted: list[str], padded: bool, key: str | None) -> Chunk:
        hashes = None
        if key is not None:
            missing = [i for i, h in enumerate(self.hashes) if h is None]
            if missing:  # records after a quote: hashed from their fields
                # (a chunk holding such records holds every row as fields: lines read before
                # them were split when they came)
                assert len(self.records) == len(self.numbers) and not self.lines
                joined = line_hashes(["\x1f".join(self.records[i]) for i in missing], key)
                for i, h in zip(missing, joined.tolist(), strict=True):
                    self.hashes[i] = h
            hashes = np.array(self.hashes, dtype=np.int64)
        fields = _Fields(self.records, self.lines, self.numbers, header.columns, wanted, padded)
        result = Chunk(fields, self.malformed, hashes)
        self.__init__()  # type: ignore[misc]
        return result


def iter_chunks(
    bundle: Bundle,
    contract: FileSpec,
    header: FileHeader,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    hashing: RowHashing | None = None,
) -> Iterator[Chunk]:
    """Yield chunks of the file: contract columns only (a missing optional column is added
    empty), values trimmed. Row numbers count the header as row 1. A record with more or
    fewer fields than the header is returned as malformed (it is quarantined, not guessed).
    An optional file the bundle does not have yields nothing. With ``hashing``, each row
    carries its record's keyed hash, and one-line records ``hashing.skip`` picks are skipped
    (their row numbers still count)."""
    if not header.present:
        return
    member = contract.filename
    wanted = [c.name for c in contract.columns]
    width = len(header.columns)
    key = hashing.key if hashing is not None else None
    skip = hashing.skip if hashing is not None else None
    row = [1]  # the last row number given (the header is row 1)
    padded = [False]  # set once a line read may hold a value to trim
    pending = _Pending()

    try:
        with _text_stream(bundle, member) as fh:
            # lines are checked for edge whitespace where they are handed on: in the fast path
            # below only those not skipped (a second night skips almost all)
            blocks = _line_blocks(fh, bundle.limits.line_chars)
            first = next(blocks, [])
            if first and '"' not in first[0]:
                blocks = itertools.chain([first[1:]], blocks)  # the header line
            else:  # a quoted header: everything goes through one reader
                blocks = _watched(itertools.chain([first], blocks), padded)
                reader = csv.reader(itertools.chain.from_iterable(blocks), strict=True)
                next(reader, None)
                yield from _quoted_records(
                    reader, pending, row, width, chunk_rows, header, wanted, padded, key, skip
                )
                return
            for block in blocks:
                if any('"' in line for line in block):
                    # from here on a record may span lines: one csv reader, nothing skipped
                    rest = _watched(itertools.chain([block], blocks), padded)
                    reader = csv.reader(itertools.chain.from_iterable(rest), strict=True)
                    yield from _quoted_records(
                        reader, pending, row, width, chunk_rows, header, wanted, padded, key, skip
                    )
                    return
                lines = [line for line in block if line.strip()]  # blank lines count for nothing
                start = 0
                while start < len(lines):
                    part = lines[start : start + chunk_rows - len(pending)]
                    start += len(part)
                    _add_plain(part, pending, row, padded, width, key, skip)
                    if len(pending) >= chunk_rows:
                        yield pending.chunk(header, wanted, padded[0], key)
            if len(pending):
                yield pending.chunk(header, wanted, padded[0], key)
    except LineTooLong as exc:
        raise _too_long(member, exc) from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(member, exc) from None
    except csv.Error as exc:
        raise BundleRefused([Problem(member, f"unreadable CSV near row {row[0] + 1} ({exc})")]) from None


def _add_plain(
    part: list[str],
    pending: _Pending,
    row: list[int],
    padded: list[bool],
    width: int,
    key: str | None,
    skip: Callable[[np.ndarray], np.ndarray] | None,
) -> None:
    """Lines without a quote into the pending chunk: numbered, hashed (with ``key``), those
    ``skip`` picks left out (their numbers still count), and whether a value may need trimming."""
    numbers: Iterable[int] = range(row[0] + 1, row[0] + 1 + len(part))
    row[0] += len(part)
    hashes: Iterable[int | None] = (
        line_hashes(record_texts(part), key).tolist() if key is not None else [None] * len(part)
    )
    if skip is not None and part:
        h = np.asarray(hashes, dtype=np.int64)
        keep = np.flatnonzero(~skip(h))
        if len(keep) < len(part):
            part = [part[i] for i in keep]
            numbers = (np.asarray(numbers)[keep]).tolist()
            hashes = h[keep].tolist()
    if part and not padded[0] and _may_need_trimming("".join(part)):
        padded[0] = True
    pending.add_lines(part, list(numbers), list(hashes), width)


def _quoted_records(
    reader: Any,
    pending: _Pending,
    row: list[int],
    width: int,
    chunk_rows: int,
    header: FileHeader,
    wanted: list[str],
    padded: list[bool],
    key: str | None,
    skip: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[Chunk]:
    """Chunks of records read one by one (a record may span lines). Records hash as their
    fields, as quote-free lines do, so one that ``skip`` picks (unchanged) is counted and left
    out here too: a re-quoted delivery of the same values costs its reading only."""
    batch: list[list[str]] = []
    numbers: list[int] = []

    def flush() -> None:
        keep = list(range(len(batch)))
        hashes: list[int | None] = [None] * len(batch)  # None: hashed by the chunk, from its fields
        if key is not None and skip is not None and batch:
            # a malformed record never matches a stored one: only whole records are compared
            whole = [i for i, rec in enumerate(batch) if len(rec) == width]
            if whole:
                h = line_hashes(["\x1f".join(batch[i]) for i in whole], key)
                for i, value in zip(whole, h.tolist(), strict=True):
                    hashes[i] = value  # kept for the chunk: not hashed a second time
                skipped = {whole[j] for j in np.flatnonzero(skip(h)).tolist()}
                keep = [i for i in keep if i not in skipped]
        pending.add([batch[i] for i in keep], [numbers[i] for i in keep], [hashes[i] for i in keep], width)
        batch.clear()
        numbers.clear()

    for rec in reader:
        if not rec or (len(rec) == 1 and rec[0].strip() == "" and width > 1):
            continue  # blank line
        row[0] += 1
        batch.append(rec)
        numbers.append(row[0])
        if len(batch) >= min(1024, max(chunk_rows - len(pending), 1)):
            flush()
            if len(pending) >= chunk_rows:
                yield pending.chunk(header, wanted, padded[0], key)
    flush()
    if len(pending):
        yield pending.chunk(header, wanted, padded[0], key)
