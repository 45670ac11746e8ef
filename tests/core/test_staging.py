"""R-ISS and R2-ISS computed from their components: every rule on both sides of its
boundary, missing components that do and do not leave the stage open, and the stored values
read through ``v_patients`` on both engines."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from etl.pipeline import run_bundle
from registry.core.staging import r2iss_stage, riss_stage, stages
from tests.conftest import TEST_KEY
from tests.etl.bundles import base_rows, write_bundle

A, P, NT = "absent", "present", "not_tested"


@pytest.mark.parametrize(
    ("iss", "ldh", "del17p", "t414", "t1416", "expected"),
    [
        ("I", False, A, A, A, "I"),  # ISS I, standard FISH, normal LDH
        ("I", True, A, A, A, "II"),  # ... an elevated LDH: not I
        ("I", False, A, P, A, "II"),  # ... t(4;14): not I
        ("I", None, P, None, None, "II"),  # high-risk FISH: II whatever the LDH
        ("I", False, NT, A, A, None),  # del(17p) not tested: I or II
        ("II", None, None, None, None, "II"),  # ISS II: II whatever the rest
        ("III", False, A, A, A, "II"),  # ISS III, standard FISH, normal LDH: II
        ("III", True, NT, None, None, "III"),  # ISS III and an elevated LDH: III
        ("III", None, A, A, P, "III"),  # ISS III and t(14;16)
        ("III", None, A, A, A, None),  # ISS III, standard FISH, LDH unknown: II or III
        (None, False, A, A, A, None),  # ISS missing: I, II or III
        (None, True, P, P, P, None),  # ISS missing: II or III
    ],
)
def test_riss(
    iss: str | None, ldh: bool | None, del17p: str, t414: str, t1416: str, expected: str | None
) -> None:
    assert riss_stage(iss, ldh, del17p, t414, t1416) == expected


@pytest.mark.parametrize(
    ("iss", "ldh", "del17p", "t414", "gain1q", "expected"),
    [
        ("I", False, A, A, A, "I"),  # 0 points
        ("I", False, A, A, P, "II"),  # 0.5
        ("II", False, A, A, A, "II"),  # 1
        ("II", False, A, A, P, "III"),  # 1.5
        ("III", False, A, A, A, "III"),  # 1.5
        ("III", True, A, A, A, "III"),  # 2.5
        ("III", False, P, A, P, "IV"),  # 3
        ("III", True, P, P, P, "IV"),  # 5
        ("II", None, A, A, P, "III"),  # 1.5 or 2.5: III either way
        ("II", None, A, A, A, None),  # 1 or 2: II or III
        ("III", True, P, P, NT, "IV"),  # 4.5 or 5
        ("I", False, A, A, None, None),  # 0 or 0.5
    ],
)
def test_r2iss(
    iss: str | None, ldh: bool | None, del17p: str, t414: str, gain1q: str | None, expected: str | None
) -> None:
    assert r2iss_stage(iss, ldh, del17p, t414, gain1q) == expected


def test_a_frame_is_staged_row_by_row_with_missing_values_of_any_kind() -> None:
    frame = pd.DataFrame(
        {
            "iss_stage": ["I", "III", None, "II"],
            "ldh_elevated": [False, 1, float("nan"), None],
            "del17p": [A, P, A, A],
            "t_4_14": [A, A, A, A],
            "t_14_16": [A, A, A, A],
            "gain_1q": [A, A, A, P],
        },
        dtype=object,
    )
    riss, r2iss = stages(frame)
    assert list(riss) == ["I", "III", None, "II"]
    assert list(r2iss) == ["I", "IV", None, "III"]  # III: 1.5 + 1 + 1 = 3.5 -> IV


def test_computed_stages_are_stored_beside_the_recorded_one(engine: Engine, tmp_path: Path) -> None:
    rows = base_rows()
    rows["patients"][1]["riss_stage"] = "I"  # ISS III with del(17p): its components say III
    run_bundle(engine, write_bundle(tmp_path / "b", rows), TEST_KEY.encode())
    with engine.connect() as conn:
        got = conn.execute(
            text(
                "SELECT iss_stage, riss_stage, riss_computed, r2iss_computed FROM v_patients "
                "ORDER BY birth_year"
            )
        ).all()
    # MRN-0003 (1950, nothing recorded), MRN-0002 (1955), MRN-0001 (1960: ISS II, 1q gain)
    assert [tuple(r) for r in got] == [
        (None, None, None, None),
        ("III", "I", "III", None),  # R2-ISS 2.5 to 5: open
        ("II", None, "II", "III"),  # R2-ISS 1 + 0.5 (+1 for LDH): III either way
    ]
