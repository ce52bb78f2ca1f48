"""The caller of a gateway request, as authentication established it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """The caller: its tenant, whether it may see every tenant, and its key id (None for the
    operator's ``GENQ_ADMIN_KEY``)."""

    tenant: str
    admin: bool
    key_id: str | None

    @property
    def scope(self) -> str | None:
        """The tenant to filter jobs by; None for an admin, who sees all."""
        return None if self.admin else self.tenant

    @property
    def rate_key(self) -> str:
        """Whose token bucket a request draws from."""
        return self.key_id or "admin-setting"
