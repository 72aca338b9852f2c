"""Publish an adapter version: immutable, complete or absent.

A version lives at ``tenants/<tenant>/loras/<name>/<version>/`` in the artifact store. Its
``manifest.json`` (sha256 and size of every file, by path in the version) is written last and
only if absent, so a reader that sees a manifest sees a complete version, and a publish cut off
halfway leaves none. A published version is never overwritten: publishing the same files again
is a no-op (a retried task), different files under the same version are refused. Only the manifest
is exclusive, not the files before it: the registry (``lora_tasks.ledger``) gives each run its own
version, so only a run's own retries, with the same files, ever share one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lora_tasks.clock import Clock, utc_now
from lora_tasks.digests import file_digest
from lora_tasks.errors import LoraTaskError
from lora_tasks.stores.base import Store

MANIFEST = "manifest.json"
CARD_FILE = "README.md"
GRID_FILE = "sample_grid.png"
LOSS_CURVE_FILE = "loss_curve.png"


def version_prefix(tenant: str, name: str, version: str) -> str:
    return f"tenants/{tenant}/loras/{name}/{version}"


def published_file(tenant: str, name: str, version: int, file: str) -> str:
    """The key of ``file`` (such as README.md) in the published version ``version`` of an adapter."""
    return f"{version_prefix(tenant, name, f'v{version}')}/{file}"


def publish_version(store: Store, tenant: str, name: str, version: str, files: dict[str, Path],
                    metadata: dict[str, Any], clock: Clock = utc_now) -> dict[str, Any]:
    """Upload ``files`` (path in the version, such as ``samples/0.png`` -> local path), then the manifest;
    returns the manifest. ``clock`` gives the manifest's ``published_at``. The manifest is written only if
    absent, so of two writers of one version one wins and the other gets its manifest (same files) or an
    error (different ones)."""
    if MANIFEST in files:
        raise LoraTaskError(f"{MANIFEST} is written by the publish itself. Fix: rename that file")
    prefix = version_prefix(tenant, name, version)
    digests = {filename: file_digest(path) for filename, path in sorted(files.items())}
    if store.exists(f"{prefix}/{MANIFEST}"):
        return same_files_or_refuse(store, prefix, digests)
    for filename, path in sorted(files.items()):
        store.upload(f"{prefix}/{filename}", path)
    manifest = {"tenant": tenant, "name": name, "version": version, "files": digests,
                "published_at": clock().isoformat(timespec="seconds"), **metadata}
    if store.write_if_absent(f"{prefix}/{MANIFEST}", json.dumps(manifest, indent=2, sort_keys=True).encode()):
        return manifest
    return same_files_or_refuse(store, prefix, digests)  # another writer (or our own lost reply) was first


def same_files_or_refuse(store: Store, prefix: str, digests: dict[str, Any]) -> dict[str, Any]:
    """The published manifest at ``prefix`` when it lists exactly ``digests`` (a retried publish)."""
    existing: dict[str, Any] = json.loads(store.read(f"{prefix}/{MANIFEST}"))
    if existing.get("files") == digests:
        return existing
    raise LoraTaskError(f"{store.uri}/{prefix} is already published with different files; versions are "
                        "immutable. Fix: publish under a new version")


def verify_version(store: Store, tenant: str, name: str, version: str) -> dict[str, Any]:
    """Check every file of a published version against its manifest; returns the manifest."""
    prefix = version_prefix(tenant, name, version)
    manifest = json.loads(store.read(f"{prefix}/{MANIFEST}"))
    for filename, expected in manifest["files"].items():
        data = store.read(f"{prefix}/{filename}")
        if len(data) != expected["bytes"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
            raise LoraTaskError(f"{store.uri}/{prefix}/{filename} does not match its manifest")
    return manifest
