"""The Airflow roles of the user behind a run, for the tenant check (include/tenants.yaml).

Airflow hands a task only the triggering user's name. Their roles live in the auth manager:
the simple auth manager keeps them in ``[core] simple_auth_manager_users`` ("name:role,..."),
which any Airflow process can read. Other auth managers (FAB, Keycloak...) keep roles in
their own store, out of a task's reach: with them, list users by name in tenants.yaml.
"""

from __future__ import annotations

SIMPLE_AUTH_MANAGER = "SimpleAuthManager"


def user_roles(user: str | None) -> frozenset[str]:
    """The roles the configured auth manager gives ``user`` (none for runs without a user)."""
    if user is None:
        return frozenset()
    from airflow.configuration import conf

    if not conf.get("core", "auth_manager", fallback="").endswith(SIMPLE_AUTH_MANAGER):
        return frozenset()
    if conf.getboolean("core", "simple_auth_manager_all_admins", fallback=False):
        return frozenset({"admin"})
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    return frozenset(u.role for u in SimpleAuthManager.get_users() if u.username == user and u.role)
