"""Tenants (include/tenants.yaml): which operators may act for each, what each one's runs may read,
each one's quotas (checked by the tenant API when a job is submitted) and admission policy (what a run
predicted to miss its deadline gets, decided by validate_request).

Airflow accounts belong to operators; a tenant never logs in to Airflow. A run's tenant must
list its triggering user by name, or one of that user's roles; the ``gateway`` logins (the tenant API's)
act for every tenant, since the API takes the tenant from the caller's key. What a run reads is bounded by
its tenant's ``read`` roots (upload prefixes, ``file://`` or ``s3://``) and the platform's
``shared_read`` roots (base-model folders every tenant may use). Relative local roots are
relative to the folder holding tenants.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lora_tasks.errors import LoraTaskError
from lora_tasks.scheduling.admission import DEFAULT_LATE, LATE_CHOICES
from lora_tasks.stores.locations import Location, parse_location

TENANT_KEYS = frozenset({"users", "roles", "read", "quotas", "admission"})
TOP_KEYS = frozenset({"tenants", "shared_read", "gateway"})
QUOTA_KEYS = frozenset({"concurrent_jobs", "gpu_hours_per_month"})


@dataclass(frozen=True)
class Quotas:
    """What one tenant may use; None: no limit."""

    concurrent_jobs: int | None = None
    gpu_hours_per_month: float | None = None


@dataclass(frozen=True)
class Tenant:
    users: frozenset[str]
    roles: frozenset[str]
    read: tuple[Location, ...] = ()
    quotas: Quotas = Quotas()
    admission: dict[str, str] = field(default_factory=dict, hash=False)
    """Per priority, what a run predicted to miss its deadline gets: accept or refuse
    (``scheduling.admission``; unset: its ``DEFAULT_LATE``)."""


@dataclass(frozen=True)
class Tenants:
    members: dict[str, Tenant]
    shared_read: tuple[Location, ...] = ()
    gateway: frozenset[str] = frozenset()
    """Airflow logins that act for every tenant: the tenant API's, which takes the tenant from the caller's key."""

    def __contains__(self, name: object) -> bool:
        return name in self.members

    def __getitem__(self, name: str) -> Tenant:
        return self.members[name]


def load_tenants(path: Path) -> Tenants:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LoraTaskError(f"tenant list {path} cannot be read ({exc}). Fix: check LORA_TENANTS_FILE") from None
    problems = [f"{key}: unknown key (allowed: {', '.join(sorted(TOP_KEYS))})" for key in set(data) - TOP_KEYS]
    entries = {name: entry or {} for name, entry in (data.get("tenants") or {}).items()}
    for name, entry in entries.items():
        problems += [f"tenants.{name}.{key}: unknown key (allowed: {', '.join(sorted(TENANT_KEYS))})"
                     for key in set(entry) - TENANT_KEYS]
        problems += [f"tenants.{name}.quotas.{key}: unknown key (allowed: {', '.join(sorted(QUOTA_KEYS))})"
                     for key in set(entry.get("quotas") or {}) - QUOTA_KEYS]
        problems += _admission_problems(name, entry.get("admission") or {})
    if problems:
        raise LoraTaskError(f"tenant list {path}: " + "; ".join(sorted(problems)) + ". Fix: correct the file")

    def roots(values: list[str] | None, key: str) -> tuple[Location, ...]:
        return tuple(parse_location(str(v), f"{path}: {key}", relative_to=path.parent) for v in values or [])

    return Tenants(
        {name: Tenant(frozenset(entry.get("users") or []), frozenset(entry.get("roles") or []),
                      roots(entry.get("read"), f"tenants.{name}.read"), Quotas(**(entry.get("quotas") or {})),
                      dict(entry.get("admission") or {}))
         for name, entry in entries.items()},
        roots(data.get("shared_read"), "shared_read"), frozenset(data.get("gateway") or []))


def _admission_problems(name: str, policy: object) -> list[str]:
    if not isinstance(policy, dict):
        return [f"tenants.{name}.admission: {policy!r} is not a mapping of priority to accept or refuse"]
    return [f"tenants.{name}.admission.{priority}: {choice!r} (allowed: priority one of "
            f"{', '.join(DEFAULT_LATE)}, value one of {', '.join(LATE_CHOICES)})"
            for priority, choice in policy.items() if priority not in DEFAULT_LATE or choice not in LATE_CHOICES]


def may_act(tenant: Tenant, user: str | None, roles: frozenset[str] = frozenset()) -> bool:
    """Whether ``user`` (with ``roles``) may act for ``tenant``. A run without a user was created by
    Airflow itself: its tenant came from where the request was stored."""
    return user is None or user in tenant.users or bool(roles & tenant.roles)


def check_tenant_access(tenants: Tenants, tenant: str, user: str | None, roles: frozenset[str] = frozenset()) -> None:
    """Refuse a run whose triggering user may not act for its tenant (before any data is read)."""
    if tenant not in tenants:
        raise LoraTaskError(f"tenant {tenant!r} is not known to this platform. Fix: use one of "
                            f"{', '.join(sorted(tenants.members))}, or ask an operator to add it to tenants.yaml")
    if user not in tenants.gateway and not may_act(tenants[tenant], user, roles):
        raise LoraTaskError(f"user {user!r} may not act for tenant {tenant!r}. Fix: trigger the run as an operator "
                            f"of {tenant!r}, or ask an admin to add {user!r} to that tenant in tenants.yaml")


def check_readable(tenants: Tenants, tenant: str, location: Location, what: str, shared: bool = False) -> None:
    """Refuse ``location`` unless it lies inside one of the tenant's read roots (or, with ``shared``,
    the platform's shared roots), after symlinks and ``..`` are resolved."""
    allowed = tenants[tenant].read + (tenants.shared_read if shared else ())
    if any(location.is_within(root) for root in allowed):
        return
    listed = ", ".join(str(r) for r in allowed) or "nothing yet"
    raise LoraTaskError(f"{what} {location.given!r} (resolved: {location}) is outside what tenant {tenant!r} may "
                        f"read ({listed}). Fix: upload it under one of those, or ask an operator to add its "
                        "folder to the tenant's read roots in tenants.yaml")
