"""Where bytes live: one way to list, read and write ``file://`` and ``s3://`` URIs (datasets and the
artifact store alike), and the immutable, manifest-last layout of published versions. May import: core."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from lora_tasks.errors import StoreError
from lora_tasks.stores.base import Store


def open_store(uri: str, endpoint_url: str | None = None) -> Store:
    """The store at ``s3://bucket/prefix``, ``file:///path`` or a plain path (relative to the working
    directory); ``endpoint_url`` points S3 at any S3-compatible server."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        from lora_tasks.stores.s3 import S3Store

        if not parsed.netloc:
            raise StoreError(f"{uri!r} names no bucket. Fix: write s3://BUCKET/PREFIX")
        return S3Store(parsed.netloc, parsed.path, endpoint_url)
    from lora_tasks.stores.local import LocalStore

    if parsed.scheme == "file":
        return LocalStore(Path(unquote(parsed.path)))
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise StoreError(f"{uri!r} uses an unsupported scheme {parsed.scheme!r}. Fix: use a folder path, file:// "
                         "or s3://")
    return LocalStore(Path(uri).expanduser().resolve())
