"""Transform: pseudonymise source ids (HMAC-SHA256 recipe of export-format.md), normalise coded
values to their stored form, map drug names through the vocabulary and derive cytogenetic
risk. Output frames have exactly the target table's loaded columns."""

from __future__ import annotations

import hmac
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from etl.contract import CONTRACTS
from registry.db.vocabulary import VocabularyMap, normalise_drug_name


class Pseudonymiser:
    """``HMAC-SHA256(key, "<site_id>:<file>:<source id>")`` in lowercase hex."""

    def __init__(self, key: bytes, site_id: str) -> None:
        self._key = key
        self._site = site_id
        self._cache: dict[tuple[str, str], str] = {}

    def one(self, namespace: str, source_id: str) -> str:
        k = (namespace, source_id)
        hit = self._cache.get(k)
        if hit is None:
            msg = f"{self._site}:{namespace}:{source_id}".encode()
            hit = hmac.digest(self._key, msg, "sha256").hex()  # the one-shot C path
            if namespace == "patient" and len(self._cache) < 2_000_000:
                self._cache[k] = hit  # patient ids repeat across files
        return hit

    def series(self, namespace: str, values: pd.Series) -> pd.Series:
        """Pseudonyms of a column: once per distinct value (patient ids repeat in every file)."""
        if namespace == "patient":
            distinct = {v: self.one(namespace, v) for v in values.unique()}
            return values.map(distinct).astype(object)
        key, prefix = self._key, f"{self._site}:{namespace}:".encode()
        out = [hmac.digest(key, prefix + v.encode(), "sha256").hex() for v in values]
        return pd.Series(out, index=values.index, dtype=object)


def cytogenetic_risk(df: pd.DataFrame) -> pd.Series:
    """high if any of del17p, t(4;14), t(14;16) present; standard if all three tested and
    absent; otherwise unknown ("not tested" is never "absent")."""
    trio = df[["del17p", "t_4_14", "t_14_16"]]
    high = (trio == "present").any(axis=1)
    standard = (trio == "absent").all(axis=1)
    return pd.Series(np.where(high, "high", np.where(standard, "standard", "unknown")), index=df.index)


def _iso(series: pd.Series) -> pd.Series:
    out = series.dt.strftime("%Y-%m-%d")
    return out.where(series.notna(), None).astype(object)


def _yes_no(series: pd.Series) -> pd.Series:
    return series.map({"yes": True, "no": False}).astype(object).where(series.notna(), None)


def _nullable(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), None)


def to_rows(
    name: str,
    valid: pd.DataFrame,
    pseudo: Pseudonymiser,
    vocab: VocabularyMap,
    site_id: str,
    run_id: int,
    unmapped: Counter[str],
) -> pd.DataFrame:
    """Typed valid rows -> the target table's columns (dates as ISO text, None for nulls)."""
    out = pd.DataFrame(index=valid.index)
    if name == "patients":
        out["patient_key"] = pseudo.series("patient", valid["patient_id"])
        out["site_code"] = site_id
        out["sex"] = valid["sex"]
        out["birth_date"] = _iso(valid["birth_date"])
        out["diagnosis_date"] = _iso(valid["diagnosis_date"])
        for c in ("iss_stage", "riss_stage"):
            out[c] = _nullable(valid[c])
        out["ldh_elevated"] = _yes_no(valid["ldh_elevated"])
        for c in ("del17p", "t_4_14", "t_14_16", "gain_1q", "heavy_chain", "light_chain"):
            out[c] = _nullable(valid[c])
        out["cytogenetic_risk"] = cytogenetic_risk(valid)
    elif name == "follow_up":
        out["patient_key"] = pseudo.series("patient", valid["patient_id"])
        out["last_contact_date"] = _iso(valid["last_contact_date"])
        out["vital_status"] = valid["vital_status"]
        out["death_date"] = _iso(valid["death_date"])
        out["cause_of_death"] = _nullable(valid["cause_of_death"])
    elif name == "transplants":
        out["transplant_key"] = pseudo.series("transplant", valid["transplant_id"])
        out["patient_key"] = pseudo.series("patient", valid["patient_id"])
        out["transplant_date"] = _iso(valid["transplant_date"])
        out["transplant_type"] = valid["transplant_type"]
        out["conditioning_agent"] = _nullable(valid["conditioning_agent"])
        out["conditioning_dose_mg_m2"] = _nullable(valid["conditioning_dose_mg_m2"])
        out["planned_tandem"] = _yes_no(valid["planned_tandem"])
        out["response_before"] = _nullable(valid["response_before"])
        out["response_day100"] = _nullable(valid["response_day100"])
    elif name == "treatments":
        out["treatment_key"] = pseudo.series("treatment", valid["treatment_id"])
        out["patient_key"] = pseudo.series("patient", valid["patient_id"])
        out["drug_raw"] = valid["drug"]
        # once per distinct recorded name: the normalised forms tried in order
        distinct = {v: vocab.lookup(v) for v in valid["drug"].unique()}
        ids = valid["drug"].map(distinct)
        for raw_name, n in valid["drug"][ids.isna()].value_counts().items():
            unmapped[normalise_drug_name(str(raw_name)) or str(raw_name)] += int(n)
        out["drug_id"] = pd.Series(
            [None if pd.isna(v) else int(v) for v in ids], index=ids.index, dtype=object
        )
        out["start_date"] = _iso(valid["start_date"])
        out["end_date"] = _iso(valid["end_date"])
        out["dose_mg"] = _nullable(valid["dose_mg"])
        out["intent"] = _nullable(valid["intent"])
        out["stop_reason"] = _nullable(valid["stop_reason"])
    elif name == "disease_events":
        out["event_key"] = pseudo.series("event", valid["event_id"])
        out["patient_key"] = pseudo.series("patient", valid["patient_id"])
        out["event_date"] = _iso(valid["event_date"])
        out["event_type"] = valid["event_type"]
        out["response"] = _nullable(valid["response"])
    else:  # pragma: no cover - the contract names every file
        raise ValueError(name)
    out["run_id"] = run_id
    out["source_row"] = valid.index.astype(int)
    return out


def quarantine_row(
    name: str,
    raw: dict[str, Any],
    reasons: list[dict[str, Any]],
    pseudo: Pseudonymiser,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The stored form of a quarantined row: source ids replaced by their pseudonyms (the
    registry never stores a raw source id), everything else verbatim."""
    data = dict(raw)
    contract = CONTRACTS[name]
    id_cols = {"patient_id": "patient", contract.id_column: contract.id_namespace}
    for col, ns in id_cols.items():
        if data.get(col):
            data[col] = pseudo.one(ns, str(data[col]))
    clean_reasons = []
    for r in reasons:
        r = dict(r)
        if r.get("column") in id_cols and r.get("value") is not None:
            r["value"] = data[r["column"]]
        clean_reasons.append(r)
    return data, clean_reasons
