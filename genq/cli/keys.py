"""``genq keys create|list|revoke``: the HTTP gateway's API keys."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from genq.cli.failure import fail
from genq.settings import Settings
from schemas import GenqError

if TYPE_CHECKING:
    from producers.api_keys import ApiKey, ApiKeyStore

__all__ = ["keys_app"]

keys_app = typer.Typer(no_args_is_help=True, help="API keys for the HTTP gateway.")


def _key_store() -> ApiKeyStore:
    from genq.store import build_engine
    from genq.store.migrate import upgrade_database
    from producers.api_keys import ApiKeyStore

    settings = Settings()
    upgrade_database(settings.store_url)
    return ApiKeyStore(build_engine(settings.store_url))


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "tenant": key.tenant,
        "name": key.name,
        "prefix": key.prefix,
        "admin": key.admin,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


@keys_app.command("create")
def create_key(
    tenant: Annotated[str, typer.Option(help="the tenant whose jobs this key sees")],
    admin: Annotated[bool, typer.Option("--admin", help="may see every tenant")] = False,
    name: Annotated[str | None, typer.Option(help="a label, e.g. the service using it")] = None,
) -> None:
    """Create a key and print it: it is shown this once and stored only as a hash."""
    try:
        key, plaintext = _key_store().create(tenant, admin=admin, name=name)
    except GenqError as exc:
        fail(exc)
    typer.echo(plaintext)
    typer.echo(
        f"key id {key.id} for tenant {key.tenant}{' (admin)' if key.admin else ''}; "
        "store the key now, it cannot be shown again",
        err=True,
    )


@keys_app.command("list")
def list_keys() -> None:
    """Every key's id, tenant, name, prefix and state (never the key)."""
    try:
        keys = _key_store().list()
    except GenqError as exc:
        fail(exc)
    typer.echo(json.dumps([_key_json(k) for k in keys], indent=2))


@keys_app.command("revoke")
def revoke_key(key_id: str) -> None:
    """Revoke a key by its id (from `genq keys list`); gateways refuse it within seconds."""
    try:
        key = _key_store().revoke(key_id)
    except GenqError as exc:
        fail(exc)
    typer.echo(json.dumps(_key_json(key)))
