"""Where bytes live: one way to list, read and write ``file://`` and ``s3://`` URIs (datasets and the
artifact store alike), and the immutable, manifest-last layout of published versions. May import: core."""

from __future__ import annotations

from pathlib import Path

from lora_tasks.stores.base import Store
from lora_tasks.stores.locations import parse_location


def open_store(uri: str, endpoint_url: str | None = None) -> Store:
    """The store at ``s3://bucket/prefix``, ``file:///path`` or a plain path (relative to the working
    directory); ``endpoint_url`` points S3 at any S3-compatible server."""
    location = parse_location(uri, "store")
    if location.scheme == "s3":
        from lora_tasks.stores.s3 import S3Store

        return S3Store(location.bucket, location.path, endpoint_url)
    from lora_tasks.stores.local import LocalStore

    return LocalStore(Path(location.path))
