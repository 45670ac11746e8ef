"""A first hostile-input corpus: each case gives one clear line (a refusal naming the problem)
or a clean load with the bad row quarantined — never a traceback, never raw control bytes on
the terminal, read = loaded + quarantined, and a refusal changes nothing — on both engines."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from registry.cli import cli
from tests.etl.bundles import base_rows, write_bundle


def _edit(fn: Callable[[str], str]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        p = folder / "treatments.csv"
        p.write_text(fn(p.read_text()))

    return apply


def _bytes(fn: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        p = folder / "treatments.csv"
        p.write_bytes(fn(p.read_bytes()))

    return apply


def _wide(text: str) -> str:
    header, *rows = text.splitlines()
    extra = ",".join(f"c{i}" for i in range(10_000))
    return "\n".join([f"{header},{extra}", *(f"{r}," + "," * 9_999 for r in rows)]) + "\n"


def _huge_line(folder: Path) -> None:
    """A 200 MB single field: refused after reading about a megabyte (bounded lines)."""
    p = folder / "treatments.csv"
    header, first, *rest = p.read_text().splitlines()
    with p.open("w") as fh:
        fh.write(header + "\n" + first.replace("Velcade", "V", 1))
        chunk = "V" * (1 << 20)
        for _ in range(200):
            fh.write(chunk)
        fh.write("\n" + "\n".join(rest) + "\n")


REFUSED = {
    "utf16": (_bytes(lambda b: b.decode().encode("utf-16")), "UTF-16, not UTF-8"),
    "semicolons": (_edit(lambda t: t.replace(",", ";")), "another delimiter"),
    "huge field": (_edit(lambda t: t.replace("Velcade", "V" * 300_000)), "field larger than field limit"),
    "200 MB line": (_huge_line, "line 2 is longer than 1,048,576 characters"),
}
LOADED = {
    "NUL byte": (_bytes(lambda b: b.replace(b"Velcade", b"Vel\x00cade")), 1),  # PostgreSQL cannot store it
    "ANSI escapes": (_edit(lambda t: t.replace("Velcade", "\x1b[31mVelcade\x1b[0m")), 0),
    "impossible dates": (_edit(lambda t: t.replace("2019-01-20", "0000-00-00", 1)), 1),
    "Feb 30": (_edit(lambda t: t.replace("2019-04-20", "2026-02-30", 1)), 1),
    "far future": (_edit(lambda t: t.replace("2019-04-20", "9999-12-31", 1)), 1),
    "NaN dose": (_edit(lambda t: t.replace("2019-05-01,25,", "2019-05-01,NaN,", 1)), 1),
    "infinite dose": (_edit(lambda t: t.replace("2019-05-01,25,", "2019-05-01,inf,", 1)), 1),
    "1e3 dose": (_edit(lambda t: t.replace("2019-05-01,25,", "2019-05-01,1e3,", 1)), 0),  # 1000 mg
    "decimal comma": (_edit(lambda t: t.replace("2019-05-01,25,", '2019-05-01,"2,5",', 1)), 1),
    "negative dose": (_edit(lambda t: t.replace(",10,", ",-10,", 1)), 1),
    "10,000 columns": (_edit(_wide), 0),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_with_one_clear_line(case: str, cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    edit, expected = REFUSED[case]
    folder = write_bundle(tmp_path / "b")
    edit(folder)
    started = time.perf_counter()
    res = CliRunner().invoke(cli, ["etl", "run", str(folder)])
    assert time.perf_counter() - started < 10  # refused while reading, not after
    assert res.exit_code == 65, res.output
    assert "Traceback" not in res.output and expected in res.output
    assert CliRunner().invoke(cli, ["db", "current"]).exit_code == 0
    runs = CliRunner().invoke(cli, ["etl", "runs", "--format", "json"])
    assert '"refused"' in runs.output


@pytest.mark.parametrize("case", sorted(LOADED))
def test_loaded_with_bad_rows_quarantined(case: str, cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    edit, quarantined = LOADED[case]
    folder = write_bundle(tmp_path / "b")
    edit(folder)
    res = CliRunner().invoke(cli, ["etl", "run", str(folder), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and "\x1b" not in res.output and "\x00" not in res.output
    files = json.loads(res.stdout)["files"]
    for counts in files.values():
        assert counts["read"] == counts["loaded"] + counts["quarantined"]
    if quarantined is not None:
        assert files["treatments"]["quarantined"] == quarantined, files["treatments"]
    if case == "10,000 columns":  # one warning line, not ten thousand
        assert res.stderr.count("unknown column") == 1 and "10000 unknown columns ignored" in res.stderr


@pytest.mark.parametrize("block", [1, 2, 3, 5, 64])
def test_bounded_reading_gives_the_rows_the_csv_module_gives(block: int) -> None:
    """Lines are read in blocks (with a bound); every line ending the csv module knows (\\n,
    \\r\\n, a lone \\r), quoted newlines and block boundaries anywhere give the same rows."""
    import csv
    import io

    from etl.extract import LineTooLong, _bounded_lines

    cases = [
        'a,b\r\n"x\r\ny",2\r\nlast,3',
        "a,b\rc,d\re,f\r",
        'a,b\n"x\u2028y",2\n',
        "h\n" + "r,1\n" * 50,
        "a,b\r\n\r\nc,d\r\n",
        '"a\rb",1\r2,3\n',
        "x\r\r\ny\n",
    ]
    for text in cases:

        def stream() -> io.TextIOWrapper:
            return io.TextIOWrapper(io.BytesIO(text.encode()), newline="")  # noqa: B023

        assert list(csv.reader(_bounded_lines(stream(), 100, block))) == list(csv.reader(stream())), text
    with pytest.raises(LineTooLong):
        list(
            _bounded_lines(io.TextIOWrapper(io.BytesIO(b"ok\n" + b"x" * 500 + b"\n"), newline=""), 100, block)
        )


def test_values_are_trimmed_even_when_only_a_late_chunk_is_padded(tmp_path: Path) -> None:
    """Values are trimmed only when a line may need it (a clean export is not trimmed value by
    value): a padded value far into the file, in a later chunk, is still trimmed."""
    from etl.bundle import Bundle
    from etl.extract import iter_chunks, read_header
    from etl.specs import SPECS

    write_bundle(tmp_path / "b", base_rows())
    path = tmp_path / "b" / "patients.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[-1] = lines[-1].replace(",", " ,\u00a0", 1)  # "MRN-0003 ,\xa0M,..."
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with Bundle(tmp_path / "b") as bundle:
        spec = SPECS["patients"]
        frames = [c.frame for c in iter_chunks(bundle, spec, read_header(bundle, spec), chunk_rows=1)]
    assert len(frames) == 3
    assert frames[-1]["patient_id"].tolist() == ["MRN-0003"] and frames[-1]["sex"].tolist() == ["M"]
    assert frames[0]["patient_id"].tolist() == ["MRN-0001"]
