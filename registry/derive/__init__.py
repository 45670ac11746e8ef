"""Derivation of exposures, transplants roles, lines, regimens, maintenance, relapses and
refractoriness (shared/spec/lines-of-therapy.md). ``core`` is pure; ``run`` reads and writes."""
