"""API keys as stored: a sha256 hash and a display prefix per key, never the key itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, update

from genq.store.engine import reader
from genq.store.tables import api_keys


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


def insert_key(engine: Engine, key: ApiKey, key_hash: str) -> None:
    """Store a new key by its hash."""
    row = {**asdict(key), "key_hash": key_hash}
    with engine.begin() as conn:
        conn.execute(api_keys.insert().values(**row))


def find_live_key(engine: Engine, key_hash: str) -> ApiKey | None:
    """The unrevoked key with this hash, if any (every authenticated request asks)."""
    query = select(api_keys).where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
    with reader(engine).connect() as conn:
        row = conn.execute(query).first()
    return _api_key(row._mapping) if row else None


def list_keys(engine: Engine, *, include_revoked: bool = True) -> list[ApiKey]:
    """Every key, oldest first."""
    query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    with reader(engine).connect() as conn:
        return [_api_key(row._mapping) for row in conn.execute(query).all()]


def revoke_key(engine: Engine, key_id: str, at: datetime) -> ApiKey | None:
    """Revoke the key (a second revoke keeps the first time); None if there is no such key."""
    with engine.begin() as conn:
        conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    return _api_key(row._mapping) if row else None


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
