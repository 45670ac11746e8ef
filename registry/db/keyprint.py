"""The pseudonym key's fingerprint: which key made the registry's pseudonyms.

A load with another key would give every patient a new pseudonym and retire the whole
registry as "no longer sent". The first load records ``HMAC-SHA256(key, LABEL)`` — it
identifies the key without revealing it — and every later load, and ``registry doctor``,
compares the key in force with it."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from sqlalchemy import Connection, insert, select

from registry.core.errors import ConfigError
from registry.db.models import KeyFingerprint

LABEL = b"mm-registry pseudonym key fingerprint v1"


def fingerprint(key: bytes) -> str:
    """The key's fingerprint (hex)."""
    return hmac.new(key, LABEL, hashlib.sha256).hexdigest()


def recorded_fingerprint(conn: Connection) -> str | None:
    """The fingerprint the registry recorded, ``None`` before its first load."""
    return conn.execute(select(KeyFingerprint.fingerprint).limit(1)).scalar()


def check_key(conn: Connection, key: bytes) -> bool:
    """True when the registry has recorded a fingerprint and ``key`` matches it; False when none
    is recorded yet. Raises ``ConfigError`` (78) for another key, naming neither."""
    recorded = recorded_fingerprint(conn)
    if recorded is None:
        return False
    if not hmac.compare_digest(recorded, fingerprint(key)):
        raise ConfigError(
            "the pseudonym key is not the one this registry's pseudonyms were made with; nothing was loaded",
            hint="set REGISTRY_PSEUDONYM_KEY to the deployment's key (a new key needs a new registry; "
            "see docs/operations.md, 'The pseudonym key')",
        )
    return True


def remember_key(conn: Connection, key: bytes, run_id: int | None) -> None:
    """Record the key's fingerprint unless one is recorded (inside the first load's transaction)."""
    if not check_key(conn, key):
        conn.execute(
            insert(KeyFingerprint).values(
                fingerprint=fingerprint(key), recorded_at=dt.datetime.now(dt.UTC), run_id=run_id
            )
        )
