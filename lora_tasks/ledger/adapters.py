"""The adapter registry: which versions of which adapters a tenant has, where they are, and how
a reference like ``name``, ``name@3``, ``name@latest`` or ``owner/name@3`` resolves.

A version is reserved when its publish starts and readable only once its manifest is written
(status ``published``): readers never see a half-uploaded version. Another tenant's adapter
resolves only when it is public, and the error is the same whether it is private or absent, so
names do not leak across tenants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from lora_tasks.errors import LoraTaskError
from lora_tasks.ledger.models import Adapter

REF = re.compile(r"^(?:(?P<owner>[A-Za-z0-9][A-Za-z0-9._-]{0,63})/)?(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,63})"
                 r"(?:@(?P<version>latest|v?[0-9]{1,9}))?$")
RESERVE_ATTEMPTS = 20


class AdapterNotFound(LoraTaskError):
    """No such adapter version for this caller (absent, unpublished, or another tenant's private one)."""


@dataclass(frozen=True)
class AdapterVersion:
    tenant: str
    name: str
    version: int
    run_id: str
    status: str
    uri: str | None
    formats: list[str]
    base_model: str
    figures: dict[str, Any]
    public: bool
    created_at: datetime
    published_at: datetime | None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def of(cls, row: Adapter) -> AdapterVersion:
        return cls(row.tenant, row.name, row.version, row.run_id, row.status, row.uri, list(row.formats),
                   row.base_model, dict(row.figures), row.public, row.created_at, row.published_at)


def parse_ref(ref: str) -> tuple[str | None, str, int | None]:
    """``[owner/]name[@version|@latest]`` -> (owner or None, name, version or None for the latest)."""
    match = REF.match(ref.strip())
    if not match:
        raise AdapterNotFound(f"{ref!r} is not an adapter reference. Fix: write 'name', 'name@3', 'name@latest' "
                              "or, for another tenant's public adapter, 'owner/name@3'")
    version = match["version"]
    return match["owner"], match["name"], None if version in (None, "latest") else int(version.lstrip("v"))


class AdapterRegistry:
    """The ledger's registry methods (mixed into ``Ledger``)."""

    sessions: sessionmaker[Session]

    def reserve_adapter_version(self, tenant: str, name: str, run_id: str, *, base_model: str, formats: list[str],
                                created_at: datetime) -> int:
        """The version this run publishes: its own if it has one (a retried publish), else the next free
        number. Two concurrent callers collide on the unique (tenant, name, version) and the loser retries."""
        for _ in range(RESERVE_ATTEMPTS):
            try:
                with self.sessions.begin() as session:
                    row = session.get(Adapter, run_id)
                    if row is not None:
                        if (row.tenant, row.name) != (tenant, name):
                            raise LoraTaskError(f"run {run_id!r} already published {row.tenant}/{row.name}")
                        return row.version
                    latest = session.scalar(select(func.max(Adapter.version)).where(
                        Adapter.tenant == tenant, Adapter.name == name))
                    version = (latest or 0) + 1
                    session.add(Adapter(run_id=run_id, tenant=tenant, name=name, version=version, status="publishing",
                                        formats=list(formats), base_model=base_model, figures={}, public=False,
                                        created_at=created_at))
                return version
            except (IntegrityError, OperationalError):
                continue  # another publish took this number (or held the SQLite write lock): try the next
        raise LoraTaskError(f"could not reserve a version of {tenant}/{name} after {RESERVE_ATTEMPTS} tries")

    def mark_adapter_published(self, tenant: str, name: str, version: int, *, uri: str, figures: dict[str, Any],
                               public: bool, published_at: datetime) -> None:
        with self.sessions.begin() as session:
            row = session.scalars(select(Adapter).where(Adapter.tenant == tenant, Adapter.name == name,
                                                        Adapter.version == version)).one()
            row.status, row.uri, row.figures, row.public = "published", uri, figures, public
            row.published_at = row.published_at or published_at

    def adapter_versions(self, tenant: str | None = None, name: str | None = None,
                         published_only: bool = True) -> list[AdapterVersion]:
        query = select(Adapter).order_by(Adapter.tenant, Adapter.name, Adapter.version)
        if tenant is not None:
            query = query.where(Adapter.tenant == tenant)
        if name is not None:
            query = query.where(Adapter.name == name)
        if published_only:
            query = query.where(Adapter.status == "published")
        with self.sessions.begin() as session:
            return [AdapterVersion.of(row) for row in session.scalars(query)]

    def resolve_adapter(self, caller_tenant: str, ref: str) -> AdapterVersion:
        """The published version ``ref`` names for ``caller_tenant``: its own, or another tenant's public one
        written ``owner/name``."""
        owner, name, version = parse_ref(ref)
        tenant = owner or caller_tenant
        query = select(Adapter).where(Adapter.tenant == tenant, Adapter.name == name, Adapter.status == "published")
        if tenant != caller_tenant:
            query = query.where(Adapter.public.is_(True))
        query = query.where(Adapter.version == version) if version is not None else \
            query.order_by(Adapter.version.desc()).limit(1)
        with self.sessions.begin() as session:
            row = session.scalars(query).first()
            if row is None:
                raise AdapterNotFound(f"no adapter {ref!r} for tenant {caller_tenant!r}. Fix: list the adapters you "
                                      "can use (GET /v1/adapters, or python -m lora_tasks.registry list --tenant "
                                      f"{caller_tenant})")
            return AdapterVersion.of(row)
