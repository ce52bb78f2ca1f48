"""API keys: ``genq_<random>`` handed out once, stored only as a sha256 hash, bound to a tenant."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.expression import Executable

from genq.store import StoreUnavailable, utcnow
from genq.store.tables import api_keys
from schemas import InvalidRequest, NotFound

KEY_PREFIX = "genq_"
# What `keys list` shows of a key so a person can tell keys apart; far too short to guess from.
DISPLAY_PREFIX_CHARS = 12
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ApiKey:
    """One key as stored: never the key itself, only its hash and a display prefix."""

    id: str
    tenant: str
    name: str | None
    prefix: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None


def hash_key(plaintext: str) -> str:
    """The sha256 hex digest a key is stored and looked up by."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key, ``genq_`` followed by 43 URL-safe characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeyStore:
    """Create, find, list and revoke API keys in the result store's ``api_keys`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self, tenant: str, *, admin: bool = False, name: str | None = None
    ) -> tuple[ApiKey, str]:
        """Store a new key for ``tenant``; returns its row and the plaintext (shown once)."""
        if not TENANT_PATTERN.match(tenant):
            raise InvalidRequest(
                f"tenant {tenant!r} must be 1-64 letters, digits, '_', '.' or '-'",
                details=[{"field": "tenant", "message": "invalid tenant name"}],
            )
        plaintext = new_key()
        row = {
            "id": str(uuid.uuid4()),
            "tenant": tenant,
            "name": name,
            "prefix": plaintext[:DISPLAY_PREFIX_CHARS],
            "key_hash": hash_key(plaintext),
            "admin": admin,
            "created_at": utcnow(),
            "revoked_at": None,
        }
        self._write(api_keys.insert().values(**row))
        return _api_key(row), plaintext

    def find(self, plaintext: str) -> ApiKey | None:
        """The live (unrevoked) key with this plaintext, if any."""
        query = select(api_keys).where(
            api_keys.c.key_hash == hash_key(plaintext), api_keys.c.revoked_at.is_(None)
        )
        try:
            with self.engine.connect() as conn:
                row = conn.execute(query).first()
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"result store unavailable: {exc.__class__.__name__}") from exc
        return _api_key(row._mapping) if row else None

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        """Every key, oldest first."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_api_key(dict(r._mapping)) for r in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke the key with id ``key_id``; revoking it twice keeps the first time."""
        self._write(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        if row is None:
            raise NotFound(f"no API key with id {key_id}; `genq keys list` shows the ids")
        return _api_key(row._mapping)

    def _write(self, statement: Executable) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(statement)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"result store unavailable: {exc.__class__.__name__}") from exc


def _api_key(m: Mapping[Any, Any]) -> ApiKey:
    return ApiKey(
        id=str(m["id"]),
        tenant=str(m["tenant"]),
        name=m["name"],
        prefix=str(m["prefix"]),
        admin=bool(m["admin"]),
        created_at=m["created_at"],
        revoked_at=m["revoked_at"],
    )
