"""The registry schema: SQLAlchemy 2 typed models. The models are the truth; the Alembic
revisions in ``migrations/`` must match them (a test runs ``alembic check``).

Every clinical table carries ``patient_key`` so that the registry could be distributed by
patient on a sharded PostgreSQL. Source rows carry lineage (the ETL run and the source row
number that last wrote them) and a current/retired flag (``mode: full`` retires records a
site no longer sends; they stay in the table, no longer current). Every column carries its
description (``doc``): ``registry db dictionary`` and docs/data-model.md are made from them.

One module a kind of table: ``base`` (the declarative base, key types, mixins), ``reference``
(sites, drug vocabulary), ``clinical`` (the records as delivered), ``derived`` (what the
derivation stores), ``operations`` (runs, quarantine, change log, data quality).
"""

from registry.db.models.base import (
    KEY,
    NAMING_CONVENTION,
    PATIENT_KEY_DOC,
    PSEUDONYM_CHARS,
    Base,
    Id,
    pseudonym_columns,
)
from registry.db.models.clinical import (
    CLINICAL_SOURCE_TABLES,
    DiseaseEvent,
    FollowUp,
    LabResult,
    Patient,
    SourceRow,
    Transplant,
    Treatment,
)
from registry.db.models.derived import (
    DERIVED_MODELS,
    Derived,
    Exposure,
    ExposureSource,
    LineDrug,
    LineOfTherapy,
    PatientSummary,
    Regimen,
    RegimenExposure,
    Relapse,
    RelapseRefractoriness,
    ResponseAssessment,
    TransplantRole,
)
from registry.db.models.operations import (
    DerivationRun,
    DqResult,
    DqRun,
    EtlRun,
    InputFinding,
    KeyFingerprint,
    QuarantinedRow,
    RecordChange,
    SourceFile,
)
from registry.db.models.reference import Drug, DrugSynonym, Site

# the derived tables' names, children before parents (the order to delete them in), from the
# foreign keys of the whole schema (every module above is imported by now)
DERIVED_TABLES: tuple[str, ...] = tuple(
    t.name
    for t in reversed(Base.metadata.sorted_tables)
    if t.name in {m.__tablename__ for m in DERIVED_MODELS}
)

__all__ = [
    "CLINICAL_SOURCE_TABLES",
    "DERIVED_MODELS",
    "DERIVED_TABLES",
    "KEY",
    "NAMING_CONVENTION",
    "PATIENT_KEY_DOC",
    "PSEUDONYM_CHARS",
    "Base",
    "DerivationRun",
    "Derived",
    "DiseaseEvent",
    "DqResult",
    "DqRun",
    "Drug",
    "DrugSynonym",
    "EtlRun",
    "Exposure",
    "ExposureSource",
    "FollowUp",
    "Id",
    "InputFinding",
    "KeyFingerprint",
    "LabResult",
    "LineDrug",
    "LineOfTherapy",
    "Patient",
    "PatientSummary",
    "QuarantinedRow",
    "RecordChange",
    "Regimen",
    "RegimenExposure",
    "Relapse",
    "RelapseRefractoriness",
    "ResponseAssessment",
    "Site",
    "SourceFile",
    "SourceRow",
    "Transplant",
    "TransplantRole",
    "Treatment",
    "pseudonym_columns",
]
