"""Reference data: the delivering sites and the drug vocabulary."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Date,
    DateTime,
    ForeignKey,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from registry.db.models.base import Base, Id


class Site(Base):
    """A delivering centre. ``last_exported_at`` guards against loading stale bundles."""

    __tablename__ = "sites"
    site_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    first_loaded_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), doc="when the site's first bundle was loaded"
    )
    last_exported_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True),
        doc="the export time of its latest loaded bundle (an older bundle is refused)",
    )
    last_data_cutoff: Mapped[dt.date | None] = mapped_column(
        Date, doc="the data cutoff of its latest loaded bundle"
    )
    last_run_id: Mapped[int | None] = mapped_column(Id, doc="the run that loaded it")


class Drug(Base):
    """The drug vocabulary: one generic name, a class and an ATC code (shipped as data)."""

    __tablename__ = "drugs"
    drug_id: Mapped[int] = mapped_column(Id, primary_key=True)
    generic_name: Mapped[str] = mapped_column(String(80), unique=True, doc="the generic name (lower case)")
    drug_class: Mapped[str] = mapped_column(
        String(32),
        doc="the class the derivation reads (e.g. immunomodulatory, proteasome inhibitor, steroid)",
    )
    atc_code: Mapped[str | None] = mapped_column(String(16), doc="the WHO ATC code, where it has one")
    vocabulary_version: Mapped[str] = mapped_column(
        String(16), doc="the vocabulary release the row came from"
    )


class DrugSynonym(Base):
    """Brand names and spellings, lower-cased and trimmed, each mapping to one drug."""

    __tablename__ = "drug_synonyms"
    synonym: Mapped[str] = mapped_column(String(120), primary_key=True)
    drug_id: Mapped[int] = mapped_column(
        Id, ForeignKey("drugs.drug_id"), index=True, doc="the drug it means (drugs)"
    )
