"""docs/sql-cookbook.md: every query runs on SQLite and PostgreSQL, and its answer equals what
the registry's own tables and derivation say (computed here independently, in Python)."""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text

from etl.pipeline import run_bundle
from etl.synth import write_bundle
from registry.cohorts.definition import load_definition
from registry.cohorts.sql import read_cohort
from registry.db.models import (
    Drug,
    FollowUp,
    LineOfTherapy,
    Patient,
    PatientSummary,
    Regimen,
    Relapse,
    RelapseRefractoriness,
    Transplant,
    TransplantRole,
)
from registry.db.roles import grant_analyst
from tests.conftest import TEST_KEY
from tests.db.analysts import as_role, drop_analyst_roles

COOKBOOK = Path(__file__).resolve().parents[2] / "docs" / "sql-cookbook.md"


def questions() -> dict[int, dict[str, str]]:
    """Question number -> {engine or 'any': query}."""
    text_ = COOKBOOK.read_text(encoding="utf-8")
    out: dict[int, dict[str, str]] = {}
    for section in re.split(r"^## ", text_, flags=re.M)[1:]:
        number = int(section.split(".", 1)[0])
        for engine, sql in re.findall(r"```sql ?(\w*)\n(.*?)```", section, flags=re.S):
            out.setdefault(number, {})[engine or "any"] = sql.strip().rstrip(";")
    return out


def _d(v: Any) -> dt.date | None:
    return None if v is None else v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v)[:10])


def _round(x: float) -> int:
    return math.floor(x + 0.5)  # half away from zero, as both engines' ROUND does for these


def _facts(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        patients = {r.patient_key: r for r in conn.execute(select(Patient).where(Patient.is_current))}
        follow = {r.patient_key: r for r in conn.execute(select(FollowUp).where(FollowUp.is_current))}
        transplants = conn.execute(
            select(Transplant.patient_key, Transplant.transplant_date, TransplantRole.role)
            .join(TransplantRole, TransplantRole.transplant_key == Transplant.transplant_key, isouter=True)
            .where(Transplant.is_current)
        ).all()
        summaries = {r.patient_key: r for r in conn.execute(select(PatientSummary))}
        relapses = conn.execute(select(Relapse).where(Relapse.is_first_after_index)).all()
        all_relapses = conn.execute(select(Relapse)).all()
        refractory_to_lenalidomide = set(
            conn.execute(
                select(RelapseRefractoriness.relapse_id)
                .join(Drug, Drug.drug_id == RelapseRefractoriness.drug_id)
                .where(Drug.generic_name == "lenalidomide", RelapseRefractoriness.refractory)
            ).scalars()
        )
        lines = conn.execute(select(LineOfTherapy)).all()
        regimens = conn.execute(
            select(Regimen, LineOfTherapy.line_number).join(
                LineOfTherapy, LineOfTherapy.line_id == Regimen.line_id
            )
        ).all()
    return {
        "patients": patients,
        "follow": follow,
        "transplants": transplants,
        "summaries": summaries,
        "relapses": relapses,
        "all_relapses": all_relapses,
        "refractory_to_lenalidomide": refractory_to_lenalidomide,
        "lines": lines,
        "regimens": regimens,
    }


def expected(number: int, f: dict[str, Any], engine: Engine) -> list[tuple[Any, ...]]:
    patients, follow, summaries = f["patients"], f["follow"], f["summaries"]
    index = [(k, _d(d)) for k, d, role in f["transplants"] if role == "index"]
    line2 = {ln.patient_key: _d(ln.start_date) for ln in f["lines"] if ln.line_number == 2}
    first_relapse = {r.patient_key: r for r in f["relapses"]}
    if number == 1:
        by_year: dict[int, list[int]] = defaultdict(list)
        for k, d in index:
            by_year[d.year].append((d - _d(patients[k].diagnosis_date)).days)
        return [(y, len(v), _round(sum(v) / len(v))) for y, v in sorted(by_year.items())]
    if number == 2:
        return sorted(
            Counter(s.lines for s in summaries.values() if s.lines and s.patient_key in patients).items()
        )
    if number == 3:
        groups: dict[str, list[Any]] = defaultdict(list)
        for s in summaries.values():
            if s.maintenance and s.patient_key in patients:
                groups[s.maintenance_agents].append(s)
        rows = []
        for agents, ss in groups.items():
            done = [
                (_d(s.maintenance_end) - _d(s.maintenance_start)).days + 1 for s in ss if s.maintenance_end
            ]
            rows.append(
                (agents, len(ss), _round(sum(done) / len(done)) if done else None, len(ss) - len(done))
            )
        return sorted(rows, key=lambda r: (-r[1],))
    if number == 4:
        c = Counter(
            s.l2_first_regimen
            for s in summaries.values()
            if "lenalidomide" in (s.maintenance_agents or "").split(", ") and s.patient_key in line2
        )
        return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
    if number == 5:
        refractory = f["refractory_to_lenalidomide"]
        return [(len(first_relapse), sum(r.relapse_id in refractory for r in first_relapse.values()))]
    if number == 6:
        known = good = 0
        for k, d in index:
            rel = first_relapse.get(k)
            rel_d = _d(rel.relapse_date) if rel else None
            fu = follow.get(k)
            death = _d(fu.death_date) if fu else None
            last = _d(fu.last_contact_date) if fu else None
            if (last is not None and (last - d).days >= 730) or death is not None or rel_d is not None:
                known += 1
                good += (rel_d is None or (rel_d - d).days > 730) and (
                    death is None or (death - d).days > 730
                )
        return [(known, good)]
    if number == 7:
        alive = [
            (_d(follow[k].last_contact_date) - d).days
            for k, d in index
            if k in follow and follow[k].vital_status == "alive"
        ]
        return [(len(alive), _round(sum(alive) / len(alive)))]
    if number == 8:
        c = Counter(
            fu.cause_of_death or "not recorded"
            for k, fu in follow.items()
            if fu.vital_status == "dead" and k in patients
        )
        return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
    if number == 9:
        c = Counter((patients[k].site_code, _d(d).year) for k, d, _ in f["transplants"] if k in patients)
        return sorted((site, year, n) for (site, year), n in c.items())
    if number == 10:
        first_of_line1: dict[str, Any] = {}
        for reg in f["regimens"]:
            if reg.line_number == 1 and reg.patient_key in patients:
                cur = first_of_line1.get(reg.patient_key)
                if cur is None or (_d(reg.start_date), reg.regimen_id) < (_d(cur.start_date), cur.regimen_id):
                    first_of_line1[reg.patient_key] = reg
        c = Counter(
            (
                "before 2015" if _d(patients[k].diagnosis_date) < dt.date(2015, 1, 1) else "2015 and later",
                r.name,
            )
            for k, r in first_of_line1.items()
            if r.phase == "induction"
        )
        return sorted(((era, name, n) for (era, name), n in c.items()), key=lambda r: (r[0], -r[2], r[1]))
    if number == 11:
        gaps = [
            (line2[k] - _d(r.relapse_date)).days
            for k, r in first_relapse.items()
            if k in line2 and line2[k] >= _d(r.relapse_date)
        ]
        return [(len(gaps), _round(sum(gaps) / len(gaps)))]
    if number == 12:
        cohort = read_cohort(engine, load_definition("lenalidomide-relapse"))
        return [
            (
                len(cohort),
                int(cohort["step_1"].sum()),
                int(cohort["step_2"].sum()),
                int(cohort["step_3"].sum()),
            )
        ]
    if number == 13:
        indexed = {k for k, _ in index}
        c13 = Counter(
            (ln.response_basis, ln.best_response or "none confirmed")
            for ln in f["lines"]
            if ln.line_number == 1 and ln.patient_key in indexed
        )
        return [(basis, best, n) for (basis, best), n in sorted(c13.items())]
    if number == 14:
        sources = [r.sources.split(",") for r in f["all_relapses"]]
        return [(len(sources), sum("labs" in s for s in sources), sum(s == ["labs"] for s in sources))]
    raise AssertionError(number)


def _normalise(rows: list[Any]) -> list[tuple[Any, ...]]:
    out = []
    for r in rows:
        out.append(
            tuple(int(v) if hasattr(v, "as_integer_ratio") and float(v).is_integer() else v for v in r)
        )
    return out


def test_the_cookbook_has_fourteen_questions_each_for_both_engines() -> None:
    qs = questions()
    assert sorted(qs) == list(range(1, 15))
    for q in qs.values():
        assert "any" in q or {"sqlite", "postgresql"} <= set(q)


def test_every_cookbook_answer_equals_the_registry(engine: Engine, db_url: str, tmp_path: Path) -> None:
    """On PostgreSQL the queries run as an analyst role made by grant-analyst, as in the docs."""
    write_bundle(tmp_path / "b", patients=300, seed=12)
    run_bundle(engine, tmp_path / "b", TEST_KEY.encode())
    facts = _facts(engine)
    role = f"ana_{uuid.uuid4().hex[:8]}"
    analyst = engine
    if engine.dialect.name == "postgresql":
        grant_analyst(engine, role, login=True)
        analyst = as_role(db_url, role)
    try:
        for number, variants in sorted(questions().items()):
            sql = variants.get(engine.dialect.name, variants.get("any"))
            with analyst.connect() as conn:
                got = _normalise(conn.execute(text(sql)).all())
            want = expected(number, facts, engine)
            assert got == want, (number, got[:5], want[:5])
            assert got, number  # every question has an answer on this registry
    finally:
        if analyst is not engine:
            analyst.dispose()
            drop_analyst_roles(engine, role)  # roles are the server's: leave none behind
