"""Which Airflow users may act for which tenant (include/tenants.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from lora_tasks.errors import LoraTaskError


@dataclass(frozen=True)
class Tenant:
    users: frozenset[str]
    roles: frozenset[str]


def load_tenants(path: Path) -> dict[str, Tenant]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LoraTaskError(f"tenant list {path} cannot be read ({exc}). Fix: check LORA_TENANTS_FILE") from None
    return {name: Tenant(frozenset(entry.get("users") or []), frozenset(entry.get("roles") or []))
            for name, entry in (data.get("tenants") or {}).items()}


def may_act(tenant: Tenant, user: str | None, roles: frozenset[str] = frozenset()) -> bool:
    """Whether ``user`` (with ``roles``) may act for ``tenant``. A run without a user was created by
    Airflow itself: its tenant came from where the request was stored."""
    return user is None or user in tenant.users or bool(roles & tenant.roles)


def check_tenant_access(tenants: dict[str, Tenant], tenant: str, user: str | None,
                        roles: frozenset[str] = frozenset()) -> None:
    """Refuse a run whose triggering user may not act for its tenant (before any data is read)."""
    if tenant not in tenants:
        raise LoraTaskError(f"tenant {tenant!r} is not known to this platform. Fix: use one of "
                            f"{', '.join(sorted(tenants))}, or ask an operator to add it to tenants.yaml")
    if not may_act(tenants[tenant], user, roles):
        raise LoraTaskError(f"user {user!r} may not act for tenant {tenant!r}. Fix: trigger the run as a member of "
                            f"{tenant!r}, or ask an operator to add {user!r} to that tenant in tenants.yaml")
