"""The drug vocabulary: shipped as ``registry/data/drugs.csv`` (versioned), loaded into the
``drugs`` and ``drug_synonyms`` tables by ``registry db upgrade`` and extendable by editing
the file (or pointing ``load_vocabulary`` at another one) — no code change needed."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sqlalchemy import Connection, insert, select, update

from registry.models import Drug, DrugSynonym

VOCABULARY_VERSION = "2026.1"
STEROID_CLASS = "steroid"

_SPACES = re.compile(r"\s+")


def normalise_drug_name(raw: str) -> str:
    """Lower-case, trim, collapse inner white space; drop a trailing '®' or '™'."""
    text = raw.replace("®", "").replace("™", "").strip().lower()
    return _SPACES.sub(" ", text)


@dataclass(frozen=True)
class DrugEntry:
    generic_name: str
    drug_class: str
    atc_code: str | None
    synonyms: tuple[str, ...]


def read_vocabulary(path: Path | None = None) -> list[DrugEntry]:
    if path is None:
        text = resources.files("registry").joinpath("data/drugs.csv").read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    entries = []
    for row in csv.DictReader(text.splitlines()):
        syns = tuple(normalise_drug_name(s) for s in row["synonyms"].split("|") if s.strip())
        entries.append(
            DrugEntry(
                generic_name=normalise_drug_name(row["generic_name"]),
                drug_class=row["drug_class"].strip(),
                atc_code=row["atc_code"].strip() or None,
                synonyms=syns,
            )
        )
    return entries


def load_vocabulary(conn: Connection, path: Path | None = None) -> int:
    """Insert or update the vocabulary; existing drug ids are kept. Returns drugs written."""
    entries = read_vocabulary(path)
    existing = {name: did for did, name in conn.execute(select(Drug.drug_id, Drug.generic_name))}
    for e in entries:
        values = {
            "drug_class": e.drug_class,
            "atc_code": e.atc_code,
            "vocabulary_version": VOCABULARY_VERSION,
        }
        if e.generic_name in existing:
            conn.execute(update(Drug).where(Drug.drug_id == existing[e.generic_name]).values(**values))
        else:
            res = conn.execute(insert(Drug).values(generic_name=e.generic_name, **values))
            pk = res.inserted_primary_key
            assert pk is not None
            existing[e.generic_name] = int(pk[0])
    known = {s for (s,) in conn.execute(select(DrugSynonym.synonym))}
    new = []
    for e in entries:
        for syn in (e.generic_name, *e.synonyms):
            if syn not in known:
                known.add(syn)
                new.append({"synonym": syn, "drug_id": existing[e.generic_name]})
    if new:
        conn.execute(insert(DrugSynonym), new)
    return len(entries)


@dataclass(frozen=True)
class VocabularyMap:
    """In-memory lookup used by the ETL and the derivations."""

    by_synonym: dict[str, int]
    names: dict[int, str]
    classes: dict[int, str]

    def lookup(self, raw: str) -> int | None:
        return self.by_synonym.get(normalise_drug_name(raw))

    def id_of(self, generic_name: str) -> int | None:
        return self.by_synonym.get(generic_name)


def vocabulary_map(conn: Connection) -> VocabularyMap:
    names: dict[int, str] = {}
    classes: dict[int, str] = {}
    for did, name, cls in conn.execute(select(Drug.drug_id, Drug.generic_name, Drug.drug_class)):
        names[int(did)] = name
        classes[int(did)] = cls
    by_syn = {s: int(d) for s, d in conn.execute(select(DrugSynonym.synonym, DrugSynonym.drug_id))}
    return VocabularyMap(by_synonym=by_syn, names=names, classes=classes)
