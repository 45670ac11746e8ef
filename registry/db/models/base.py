"""The declarative base, the key types and the mixins every registry table builds on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Integer,
    MetaData,
    String,
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
KEY = String(64)  # HMAC-SHA256 hex pseudonym
PATIENT_KEY_DOC = "the patient's pseudonym (a keyed HMAC of site and source id; never the id itself)"


class Base(DeclarativeBase):
    """Declarative base with the naming convention; the models are the schema's truth."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012 - read by SQLAlchemy
