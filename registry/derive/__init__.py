"""Derivation of exposures, transplants roles, lines, regimens, maintenance, relapses and
refractoriness (docs/derivations.md). ``core`` is pure; ``run`` reads and writes."""
