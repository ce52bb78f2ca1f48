"""API keys: ``genq_<random>`` handed out once, stored only as a sha256 hash, bound to a tenant
(``genq.store.api_keys``)."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid

from genq.store import Engine, utcnow
from genq.store.api_keys import ApiKey, find_live_key, insert_key, list_keys, revoke_key
from schemas import InvalidRequest, NotFound

__all__ = ["ApiKey", "ApiKeyStore", "hash_key", "new_key"]

KEY_PREFIX = "genq_"
# What `keys list` shows of a key so a person can tell keys apart; far too short to guess from.
DISPLAY_PREFIX_CHARS = 12
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
        key = ApiKey(
            id=str(uuid.uuid4()),
            tenant=tenant,
            name=name,
            prefix=plaintext[:DISPLAY_PREFIX_CHARS],
            admin=admin,
            created_at=utcnow(),
            revoked_at=None,
        )
        insert_key(self.engine, key, hash_key(plaintext))
        return key, plaintext

    def find(self, plaintext: str) -> ApiKey | None:
        """The live (unrevoked) key with this plaintext, if any."""
        return find_live_key(self.engine, hash_key(plaintext))

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        """Every key, oldest first."""
        return list_keys(self.engine, include_revoked=include_revoked)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke the key with id ``key_id``; revoking it twice keeps the first time."""
        key = revoke_key(self.engine, key_id, utcnow())
        if key is None:
            raise NotFound(f"no API key with id {key_id}; `genq keys list` shows the ids")
        return key
