"""Pseudonyms are the first 128 bits of ``HMAC-SHA256(key, "<site_id>:<file>:<source id>")`` in
lowercase hex (32 characters), however the pseudonymiser computes them (one at a time, a column at
once, with the key and prefix hashed once per namespace)."""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.transform import Pseudonymiser

ID = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
IDS = st.lists(ID, min_size=1, max_size=20)
KEYS = st.binary(min_size=1, max_size=100)  # longer than SHA-256's block too (the key is hashed)


def recipe(key: bytes, site: str, namespace: str, source_id: str) -> str:
    return hmac.new(key, f"{site}:{namespace}:{source_id}".encode(), hashlib.sha256).hexdigest()[:32]


@settings(max_examples=100, deadline=None)
@given(KEYS, st.sampled_from(["SITE-A", "Hôpital-7"]), IDS)
def test_every_way_of_pseudonymising_follows_the_recipe(key: bytes, site: str, ids: list[str]) -> None:
    pseudo = Pseudonymiser(key, site)
    for namespace in ("patient", "treatment", "event"):
        expected = [recipe(key, site, namespace, i) for i in ids]
        for dtype in (object, pd.StringDtype("pyarrow")):
            column = pd.Series(ids, index=range(10, 10 + len(ids)), dtype=dtype)
            got = pseudo.series(namespace, column)
            assert got.tolist() == expected
            assert list(got.index) == list(column.index)
        assert [pseudo.one(namespace, i) for i in ids] == expected
    # another site or namespace, another pseudonym
    assert pseudo.one("treatment", ids[0]) != pseudo.one("event", ids[0])
    assert Pseudonymiser(key, site + "x").one("patient", ids[0]) != pseudo.one("patient", ids[0])
