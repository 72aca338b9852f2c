"""API keys: each acts for one tenant, so a caller's tenant comes from its key, never from a request.

A key is shown once, when created; the ledger keeps its sha256 and a short id to list and revoke it by.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lora_tasks.errors import LoraTaskError
from lora_tasks.ledger.models import ApiKey

PREFIX = "lora"


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    tenant: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """The ledger's key methods (mixed into ``Ledger``)."""

    sessions: sessionmaker[Session]

    def create_api_key(self, tenant: str, label: str = "", created_at: datetime | None = None) -> str:
        """A new key for ``tenant``; the plaintext is returned once and never stored."""
        key_id = secrets.token_hex(6)
        key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        with self.sessions.begin() as session:
            session.add(ApiKey(key_id=key_id, tenant=tenant, digest=key_digest(key), label=label,
                               created_at=created_at or datetime.now(UTC)))
        return key

    def tenant_for_api_key(self, key: str) -> str | None:
        """The tenant a key acts for; None for an unknown or revoked key."""
        with self.sessions.begin() as session:
            row = session.scalars(select(ApiKey).where(ApiKey.digest == key_digest(key))).first()
            return row.tenant if row is not None and row.revoked_at is None else None

    def revoke_api_key(self, key_id: str, revoked_at: datetime | None = None) -> None:
        with self.sessions.begin() as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                raise LoraTaskError(f"no API key with id {key_id!r}. Fix: list them with "
                                    "python -m lora_tasks.ledger keys list")
            row.revoked_at = row.revoked_at or revoked_at or datetime.now(UTC)

    def api_keys(self, tenant: str | None = None) -> list[KeyInfo]:
        query = select(ApiKey).order_by(ApiKey.tenant, ApiKey.created_at)
        if tenant is not None:
            query = query.where(ApiKey.tenant == tenant)
        with self.sessions.begin() as session:
            return [KeyInfo(r.key_id, r.tenant, r.label, r.created_at, r.revoked_at) for r in session.scalars(query)]
