"""Drug-name normalisation and the vocabulary: real-world spellings map to one generic name."""

from __future__ import annotations

import pytest

from registry.db.vocabulary import VocabularyMap, drug_name_candidates, normalise_drug_name, read_vocabulary

ENTRIES = read_vocabulary()
IDS = {e.generic_name: i for i, e in enumerate(ENTRIES, start=1)}
VOCAB = VocabularyMap(
    by_synonym={s: IDS[e.generic_name] for e in ENTRIES for s in (e.generic_name, *e.synonyms)},
    names={i: name for name, i in IDS.items()},
    classes={IDS[e.generic_name]: e.drug_class for e in ENTRIES},
)


def generic(raw: str) -> str | None:
    did = VOCAB.lookup(raw)
    return None if did is None else VOCAB.names[did]


SPELLINGS = [
    # brand names, case, trade marks
    ("REVLIMID", "lenalidomide"),
    ("  Velcade ", "bortezomib"),
    ("Darzalex Faspro", "daratumumab"),
    ("dEXAMETHASONE", "dexamethasone"),
    ("Imnovid®", "pomalidomide"),
    ("KYPROLIS", "carfilzomib"),
    ("Ninlaro™", "ixazomib"),
    ("Sarclisa", "isatuximab"),
    ("Empliciti", "elotuzumab"),
    ("Xpovio", "selinexor"),
    ("Tecvayli", "teclistamab"),
    ("Carvykti", "ciltacabtagene autoleucel"),
    # dose and strength
    ("Revlimid 10 mg", "lenalidomide"),
    ("lenalidomide 25mg", "lenalidomide"),
    ("Bortezomib 1.3 mg/m2", "bortezomib"),
    ("bortezomib 1,3 mg/m²", "bortezomib"),
    ("Melphalan 200 mg/m2", "melphalan"),
    ("Dexamethasone 40 mg PO", "dexamethasone"),
    ("Daratumumab 16 mg/kg IV", "daratumumab"),
    ("Revlimid 10", "lenalidomide"),
    # route and form words
    ("Velcade SC", "bortezomib"),
    ("bortezomib s.c.", "bortezomib"),
    ("Lenalidomide capsules", "lenalidomide"),
    ("Dexamethasone tablets", "dexamethasone"),
    ("Cyclophosphamide IV infusion", "cyclophosphamide"),
    ("Daratumumab subcutaneous injection", "daratumumab"),
    ("Pomalidomide oral", "pomalidomide"),
    ("Zoledronic acid 4 mg intravenous", "zoledronic acid"),
    # accents and other-language INN spellings
    ("Lénalidomide", "lenalidomide"),
    ("lenalidomida", "lenalidomide"),
    ("Lenalidomid", "lenalidomide"),
    ("bortézomib", "bortezomib"),
    ("Dexametasona", "dexamethasone"),
    ("Dexaméthasone", "dexamethasone"),
    ("Melfalán", "melphalan"),
    ("Ciclofosfamida", "cyclophosphamide"),
    ("Talidomida", "thalidomide"),
    ("Acide zolédronique", "zoledronic acid"),
    # parentheses, hyphenated formulation and biosimilar suffixes
    ("Kyprolis (carfilzomib)", "carfilzomib"),
    ("carfilzomib (Kyprolis)", "carfilzomib"),
    ("Study drug [lenalidomide]", "lenalidomide"),
    ("daratumumab-hyaluronidase", "daratumumab"),
    ("daratumumab and hyaluronidase-fihj", "daratumumab"),
    ("Pegfilgrastim-jmdb", "pegfilgrastim"),
    ("filgrastim-sndz", "filgrastim"),
    # hyphens that are part of the name
    ("CC-5013", "lenalidomide"),
    ("Solu-Medrol", "methylprednisolone"),
    ("ide-cel", "idecabtagene vicleucel"),
    ("G-CSF", "filgrastim"),
    # supportive and mobilisation agents
    ("Neupogen", "filgrastim"),
    ("Mozobil", "plerixafor"),
    ("Zometa", "zoledronic acid"),
    ("Xgeva", "denosumab"),
    ("Aciclovir", "acyclovir"),
    ("dexamethasone sodium phosphate", "dexamethasone"),
]


@pytest.mark.parametrize(("raw", "expected"), SPELLINGS)
def test_real_world_spelling_maps_to_its_generic(raw: str, expected: str) -> None:
    assert generic(raw) == expected


def test_there_are_at_least_forty_spellings() -> None:
    assert len(SPELLINGS) >= 40


@pytest.mark.parametrize(
    "raw", ["Mystery  Drug", "investigational agent x", "", "10 mg", "lenalidomide/dexamethasone"]
)
def test_unknown_names_stay_unmapped(raw: str) -> None:
    assert generic(raw) is None


def test_candidates_try_the_whole_name_before_dropping_a_suffix_or_using_parentheses() -> None:
    assert drug_name_candidates("daratumumab-hyaluronidase-fihj") == [
        "daratumumab-hyaluronidase-fihj",
        "daratumumab-hyaluronidase",
        "daratumumab",
    ]
    assert drug_name_candidates("Kyprolis (carfilzomib) 56 mg/m2") == ["kyprolis", "carfilzomib"]
    assert normalise_drug_name("  REVLIMID®  10 MG ") == "revlimid"


def test_supportive_drugs_have_their_own_class_and_every_synonym_is_unique() -> None:
    classes = {e.generic_name: e.drug_class for e in ENTRIES}
    for name in ("filgrastim", "pegfilgrastim", "plerixafor", "zoledronic acid", "denosumab", "acyclovir"):
        assert classes[name] == "supportive"
    seen: dict[str, str] = {}
    for e in ENTRIES:
        for s in {e.generic_name, *e.synonyms}:
            assert seen.setdefault(s, e.generic_name) == e.generic_name, s
