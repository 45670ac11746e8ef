"""The declarative base, the key types and the mixins every registry table builds on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A BigInteger primary key on SQLite is not the rowid: use INTEGER there.
Id = BigInteger().with_variant(Integer(), "sqlite")
# A pseudonym is the first 128 bits of an HMAC-SHA256, in lowercase hex (etl/transform.py):
# 32 characters. Before migration 0021 it was all 256 bits (64 characters); halving it made the
# largest tables and their indexes a third smaller (docs/benchmarks.md), and 128 bits still make
# a collision among a billion records a chance of about 1e-21. On PostgreSQL the "C" collation:
# pseudonyms are compared byte by byte (the order of hex digits is the same in every collation).
PSEUDONYM_CHARS = 32
KEY = String(PSEUDONYM_CHARS).with_variant(String(PSEUDONYM_CHARS, collation="C"), "postgresql")
PATIENT_KEY_DOC = "the patient's pseudonym (a keyed HMAC of site and source id; never the id itself)"


def pseudonym_columns(table: Table) -> tuple[str, ...]:
    """The columns of a table (a ``Table``) that hold pseudonyms: those of type ``KEY``."""
    return tuple(c.name for c in table.columns if c.type is KEY)


class Base(DeclarativeBase):
    """Declarative base with the naming convention; the models are the schema's truth."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012 - read by SQLAlchemy
