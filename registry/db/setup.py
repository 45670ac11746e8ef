"""Bring a database to a usable state: the schema at head, then the shipped reference data.
Seeding is its own step, not hidden inside a migration: a new vocabulary needs no revision."""

from __future__ import annotations

from sqlalchemy import Engine

from registry.db.database import upgrade
from registry.db.views import create_views
from registry.db.vocabulary import load_vocabulary, remap_treatments


def seed_reference_data(engine: Engine) -> int:
    """Load (insert or update) the drug vocabulary, re-map stored treatment rows that it now
    maps differently (flagging their patients for derivation), and (re)create the analysts'
    views.

    Returns
    -------
    int
        The number of treatment rows re-mapped.
    """
    with engine.begin() as conn:
        load_vocabulary(conn)
        remapped = remap_treatments(conn)
        create_views(conn)  # the analysts' views follow the schema
        return remapped


def prepare(engine: Engine) -> int:
    """Migrate to head and seed the reference data (what ``registry db upgrade`` does).

    Returns
    -------
    int
        The number of treatment rows re-mapped by the vocabulary.
    """
    upgrade(engine)
    return seed_reference_data(engine)
