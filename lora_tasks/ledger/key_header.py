"""The calling tenant of an HTTP request, from its API key: one rule for every interface tenants use
(serving, the tenant API). The key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; the
tenant is the one the ledger binds the key to, never anything the request says."""

from collections.abc import Callable
from typing import Annotated

from fastapi import Header, HTTPException

MISSING = "missing API key. Fix: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
REFUSED = "unknown or revoked API key. Fix: ask an operator for a key (python -m lora_tasks.tenants keys create)"


def tenant_dependency(lookup: Callable[[str], str | None]) -> Callable[..., str]:
    """A FastAPI dependency that returns the caller's tenant or answers 401; ``lookup`` maps a key to its
    tenant (None for an unknown, revoked or malformed one)."""

    def tenant(authorization: Annotated[str | None, Header()] = None,
               x_api_key: Annotated[str | None, Header()] = None) -> str:
        key = x_api_key or None
        if key is None and authorization is not None:
            scheme, _, token = authorization.partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else None
        if not key:
            raise HTTPException(401, MISSING, headers={"WWW-Authenticate": "Bearer"})
        found = lookup(key)
        if found is None:
            raise HTTPException(401, REFUSED, headers={"WWW-Authenticate": "Bearer"})
        return found

    return tenant
