"""Regimen acronyms and backbones: known combinations by their usual letters whatever the
order of the drugs, nothing guessed for an unknown one, classes in a fixed order."""

from __future__ import annotations

from registry.db.vocabulary import read_vocabulary
from registry.derive.regimen_names import ACRONYMS, CLASS_ORDER, acronym, backbone


def test_known_combinations_in_any_order() -> None:
    assert acronym(["lenalidomide", "dexamethasone", "bortezomib"]) == "VRd"
    assert acronym(["carfilzomib", "dexamethasone", "lenalidomide"]) == "KRd"
    assert acronym(["daratumumab", "bortezomib", "thalidomide", "dexamethasone"]) == "D-VTd"
    assert acronym(["pomalidomide", "dexamethasone"]) == "Pd"
    assert acronym(["lenalidomide"]) == "R"


def test_an_unknown_combination_has_no_acronym() -> None:
    assert acronym(["bortezomib", "lenalidomide"]) is None  # VRd without the steroid is not VRd
    assert acronym(["venetoclax", "dexamethasone"]) is None
    assert acronym([]) is None


def test_backbone_names_each_class_once_in_order() -> None:
    assert backbone(["steroid", "IMiD", "PI", "IMiD"]) == "PI + IMiD + steroid"
    assert backbone(["IMiD", "anti-CD38", "steroid"]) == "anti-CD38 + IMiD + steroid"
    assert backbone(["steroid", "zeta", "PI"]) == "PI + steroid + zeta"  # unknown classes last
    assert backbone([]) == ""


def test_every_drug_and_class_named_is_in_the_vocabulary() -> None:
    vocab = read_vocabulary()
    generic = {e.generic_name for e in vocab}
    classes = {e.drug_class for e in vocab}
    assert set().union(*ACRONYMS) <= generic
    assert classes - {"supportive"} <= set(CLASS_ORDER)
    assert len(set(ACRONYMS.values())) == len(ACRONYMS)  # one combination per acronym
