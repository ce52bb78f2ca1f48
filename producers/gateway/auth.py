"""Who is calling: ``Authorization: Bearer genq_…`` resolved to a tenant, or a 401.

Keys live hashed in the store (``producers.api_keys``). A verified key is remembered for
``Settings.gateway_key_cache_seconds`` so a busy client does not cost a store read per request;
that is also how long a revoked key may keep working.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from producers.api_keys import hash_key
from producers.gateway.errors import Forbidden
from producers.gateway.principal import Principal
from producers.gateway.state import Gateway, gateway_of
from schemas import Unauthorized

__all__ = ["Principal", "bearer_scheme", "current_principal", "require_admin"]

ADMIN_TENANT = "default"

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An API key from `genq keys create`, sent as `Authorization: Bearer genq_…`.",
)


async def authenticate(key: str, gateway: Gateway) -> Principal | None:
    """The principal ``key`` stands for, or None if it is not a live key."""
    settings, cache = gateway.settings, gateway.key_cache
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
    if admin_key and hmac.compare_digest(key.encode(), admin_key.encode()):
        return Principal(tenant=ADMIN_TENANT, admin=True, key_id=None)
    key_hash = hash_key(key)
    cached = cache.get(key_hash)
    if cached is not None:
        return cached
    stored = await gateway.call(gateway.keys.find, key)
    if stored is None:
        return None
    principal = Principal(tenant=stored.tenant, admin=stored.admin, key_id=stored.id)
    cache.put(key_hash, principal)
    return principal


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """FastAPI dependency: the caller, or 401 ``unauthorized`` without a valid key."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized("send an API key as 'Authorization: Bearer genq_…'")
    principal = await authenticate(credentials.credentials, gateway_of(request))
    if principal is None:
        raise Unauthorized("this API key is not valid (unknown or revoked)")
    return principal


async def require_admin(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    """FastAPI dependency: the caller if it holds an admin key, else 403 ``forbidden``."""
    if not principal.admin:
        raise Forbidden("this needs an admin API key (`genq keys create --admin`)")
    return principal
