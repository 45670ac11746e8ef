"""What a clinician calls a regimen: its acronym (VRd, KRd, DRd, ...) when it is a known
combination, and its backbone — the drug classes it combines, in a fixed order ("anti-CD38 +
PI + IMiD + steroid") — for every regimen.

Acronyms follow the usual myeloma letters: V bortezomib (Velcade), K carfilzomib (Kyprolis),
I ixazomib, R lenalidomide (Revlimid), T thalidomide, P pomalidomide, D daratumumab, Isa
isatuximab, E elotuzumab, C cyclophosphamide, M melphalan, S selinexor, d low-dose
dexamethasone. The list is deliberately closed: a combination not in it has no acronym rather
than a guessed one."""

from __future__ import annotations

from collections.abc import Iterable

BORTEZOMIB, CARFILZOMIB, IXAZOMIB = "bortezomib", "carfilzomib", "ixazomib"
LEN, THAL, POM = "lenalidomide", "thalidomide", "pomalidomide"
DARA, ISA, ELO = "daratumumab", "isatuximab", "elotuzumab"
CY, MEL, SEL, DEX = "cyclophosphamide", "melphalan", "selinexor", "dexamethasone"

ACRONYMS: dict[frozenset[str], str] = {
    frozenset(drugs): name
    for drugs, name in [
        ((BORTEZOMIB, LEN, DEX), "VRd"),
        ((CARFILZOMIB, LEN, DEX), "KRd"),
        ((IXAZOMIB, LEN, DEX), "IRd"),
        ((DARA, LEN, DEX), "DRd"),
        ((ELO, LEN, DEX), "ERd"),
        ((BORTEZOMIB, THAL, DEX), "VTd"),
        ((BORTEZOMIB, CY, DEX), "VCd"),
        ((BORTEZOMIB, MEL, "prednisone"), "VMP"),
        ((DARA, BORTEZOMIB, LEN, DEX), "D-VRd"),
        ((DARA, BORTEZOMIB, THAL, DEX), "D-VTd"),
        ((DARA, CARFILZOMIB, LEN, DEX), "D-KRd"),
        ((ISA, BORTEZOMIB, LEN, DEX), "Isa-VRd"),
        ((ISA, CARFILZOMIB, LEN, DEX), "Isa-KRd"),
        ((DARA, BORTEZOMIB, DEX), "DVd"),
        ((DARA, CARFILZOMIB, DEX), "DKd"),
        ((DARA, POM, DEX), "DPd"),
        ((ISA, POM, DEX), "Isa-Pd"),
        ((ISA, CARFILZOMIB, DEX), "Isa-Kd"),
        ((ELO, POM, DEX), "EPd"),
        ((BORTEZOMIB, POM, DEX), "PVd"),
        ((SEL, BORTEZOMIB, DEX), "SVd"),
        ((CARFILZOMIB, POM, DEX), "KPd"),
        ((CARFILZOMIB, CY, DEX), "KCd"),
        ((POM, CY, DEX), "PCd"),
        ((LEN, DEX), "Rd"),
        ((THAL, DEX), "Td"),
        ((POM, DEX), "Pd"),
        ((BORTEZOMIB, DEX), "Vd"),
        ((CARFILZOMIB, DEX), "Kd"),
        ((DARA, DEX), "Dd"),
        ((SEL, DEX), "Sd"),
        ((LEN,), "R"),
        ((THAL,), "T"),
        ((BORTEZOMIB,), "V"),
        ((IXAZOMIB,), "I"),
        ((DARA,), "D"),
        ((MEL,), "M"),
    ]
}

# the order classes are named in a backbone: antibodies first, steroid last
CLASS_ORDER = (
    "anti-CD38",
    "anti-SLAMF7",
    "BCMA",
    "GPRC5D",
    "PI",
    "IMiD",
    "alkylator",
    "anthracycline",
    "XPO1",
    "BCL2",
    "other",
    "steroid",
)


def acronym(drugs: Iterable[str]) -> str | None:
    """The regimen's acronym when its generic names are a known combination, else ``None``."""
    return ACRONYMS.get(frozenset(drugs))


def backbone(classes: Iterable[str]) -> str:
    """The drug classes the regimen combines, each once, in ``CLASS_ORDER`` (unknown classes
    after the known ones, alphabetically), joined by " + "."""
    present = set(classes)
    known = [c for c in CLASS_ORDER if c in present]
    return " + ".join(known + sorted(present - set(CLASS_ORDER)))
