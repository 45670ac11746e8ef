"""The drug vocabulary: shipped as ``registry/data/drugs.csv`` (versioned), loaded into the
``drugs`` and ``drug_synonyms`` tables by ``registry db upgrade`` and extendable by editing
the file (or pointing ``load_vocabulary`` at another one) — no code change needed.

A recorded drug name is normalised before the lookup (``drug_name_candidates``): case folded,
accents removed, dose and strength, route and form words and salt names dropped; a
hyphenated formulation or biosimilar suffix is dropped when the whole name does not map, and
text in parentheses or brackets is tried on its own when the rest does not map.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sqlalchemy import Connection, insert, select, update

from registry.db.models import Drug, DrugSynonym, Patient, Treatment

VOCABULARY_VERSION = "2026.2"
STEROID_CLASS = "steroid"
SUPPORTIVE_CLASS = "supportive"

_SPACES = re.compile(r"\s+")
_BRACKETED = re.compile(r"[(\[]([^)\]]*)[)\]]")
# a dose or strength: 10 mg, 25mg, 1.3 mg/m2, 1,3 mg/m², 200 mg/m^2, 0.5 mcg/kg, 100 IU, 10%
_DOSE = re.compile(
    r"(?<![a-z0-9])\d+(?:[.,]\d+)?\s*"
    r"(?:mg|mcg|µg|μg|ug|g|ml|iu|ui|units?|mmol|%)"
    r"(?:\s*/\s*(?:m2|m\^2|kg|day|d|dose|ml|week|wk|h))?(?![a-z0-9])"
)
_PER_AREA = re.compile(r"(?<![a-z0-9])/\s*(?:m2|m\^2|kg|day|d)(?![a-z0-9])")
_NUMBER = re.compile(r"(?<![a-z0-9-])\d+(?:[.,]\d+)?(?![a-z0-9-])")
# route, form and salt words: never part of a drug's identity
_DROPPED_WORDS = frozenset(
    [
        "sc",
        "s.c.",
        "s/c",
        "subcut",
        "subcutaneous",
        "iv",
        "i.v.",
        "intravenous",
        "po",
        "p.o.",
        "oral",
        "orally",
        "per",
        "os",
        "tablet",
        "tablets",
        "tab",
        "tabs",
        "capsule",
        "capsules",
        "cap",
        "caps",
        "injection",
        "injectable",
        "inj",
        "infusion",
        "solution",
        "powder",
        "concentrate",
        "for",
        "vial",
        "vials",
        "pen",
        "prefilled",
        "syringe",
        "film-coated",
        "hydrochloride",
        "hcl",
        "monohydrate",
        "hydrate",
        "citrate",
        "sodium",
        "disodium",
        "phosphate",
        "acetate",
    ]
)
_PUNCTUATION = re.compile(r"[,;:*\"'`]+")


def _fold(raw: str) -> str:
    """Lower case, accents removed (Lénalidomide -> lenalidomide), ® and ™ dropped."""
    text = unicodedata.normalize("NFKD", raw.replace("®", " ").replace("™", " "))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return text.lower()


def _clean(text: str) -> str:
    text = _DOSE.sub(" ", text)
    text = _PER_AREA.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    text = _PUNCTUATION.sub(" ", text)
    words = [w for w in text.split() if w not in _DROPPED_WORDS]
    return _SPACES.sub(" ", " ".join(words)).strip(" -./")


def drug_name_candidates(raw: str) -> list[str]:
    """The forms of a recorded name to look up, most specific first: the cleaned name, then
    with hyphenated suffixes dropped one by one (``daratumumab-hyaluronidase-fihj``), then
    the same for text in parentheses or brackets (``Kyprolis (carfilzomib)``)."""
    text = _fold(raw)
    parts = [_BRACKETED.sub(" ", text), *_BRACKETED.findall(text)]
    out: list[str] = []
    for part in parts:
        name = _clean(part)
        while name:
            if name not in out:
                out.append(name)
            head, sep, _ = name.rpartition("-")
            if not sep:
                break
            name = head.strip()
    return out


def normalise_drug_name(raw: str) -> str:
    """The primary normalised form of a name (the first lookup candidate; '' if none)."""
    cands = drug_name_candidates(raw)
    return cands[0] if cands else ""


@dataclass(frozen=True)
class DrugEntry:
    """One drug of the shipped vocabulary with its normalised synonyms."""

    generic_name: str
    drug_class: str
    atc_code: str | None
    synonyms: tuple[str, ...]


def read_vocabulary(path: Path | None = None) -> list[DrugEntry]:
    """The vocabulary file (default: the shipped ``registry/data/drugs.csv``), names normalised."""
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
        """The drug id of a recorded name: the first normalised form that maps."""
        for name in drug_name_candidates(raw):
            did = self.by_synonym.get(name)
            if did is not None:
                return did
        return None


def vocabulary_map(conn: Connection) -> VocabularyMap:
    """The stored vocabulary as an in-memory lookup (synonyms, names, classes)."""
    names: dict[int, str] = {}
    classes: dict[int, str] = {}
    for did, name, cls in conn.execute(select(Drug.drug_id, Drug.generic_name, Drug.drug_class)):
        names[int(did)] = name
        classes[int(did)] = cls
    by_syn = {s: int(d) for s, d in conn.execute(select(DrugSynonym.synonym, DrugSynonym.drug_id))}
    return VocabularyMap(by_synonym=by_syn, names=names, classes=classes)


def remap_treatments(conn: Connection) -> int:
    """Re-map stored treatment rows whose recorded name the current vocabulary (or the
    current normalisation) maps differently, and flag their patients for derivation.
    Returns the number of rows re-mapped. One pass over the distinct (name, drug) pairs."""
    vocab = vocabulary_map(conn)
    changed = 0
    pairs = conn.execute(select(Treatment.drug_raw, Treatment.drug_id).distinct()).all()
    for raw, old in pairs:
        new = vocab.lookup(raw)
        if new == old:
            continue
        same = (Treatment.drug_raw == raw) & (
            Treatment.drug_id.is_(None) if old is None else Treatment.drug_id == old
        )
        conn.execute(
            update(Patient)
            .where(Patient.patient_key.in_(select(Treatment.patient_key).where(same)))
            .values(needs_derivation=True)
        )
        changed += conn.execute(update(Treatment).where(same).values(drug_id=new)).rowcount or 0
    return changed
