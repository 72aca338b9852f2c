"""A store URI in canonical form: what ``open_store`` opens, and what "is it inside this root?" compares.

Local paths are resolved the way the kernel will open them (symlinks followed, ``..`` folded,
``file://`` unwrapped); S3 locations keep bucket and key prefix as written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from lora_tasks.errors import StoreError


@dataclass(frozen=True)
class Location:
    given: str
    scheme: str
    """'file' or 's3'."""
    bucket: str
    path: str
    """Absolute resolved path (file) or key prefix without leading or trailing slash (s3)."""

    def __str__(self) -> str:
        return self.path if self.scheme == "file" else f"s3://{self.bucket}/{self.path}".rstrip("/")

    def is_within(self, root: Location) -> bool:
        """Whether this location is ``root`` or lies under it, on whole path segments."""
        if (self.scheme, self.bucket) != (root.scheme, root.bucket):
            return False
        if self.scheme == "file":
            return Path(self.path).is_relative_to(root.path)
        return not root.path or self.path == root.path or self.path.startswith(root.path + "/")


def parse_location(uri: str, what: str, relative_to: Path | None = None) -> Location:
    """``uri`` (a path, ``file://`` or ``s3://``) in canonical form; relative paths are taken from
    ``relative_to`` (default: the working directory)."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"{what}: {uri!r} names no bucket. Fix: write s3://BUCKET/PREFIX")
        return Location(uri, "s3", parsed.netloc, parsed.path.strip("/"))
    if parsed.scheme == "file":
        path = unquote(parsed.path)
    elif parsed.scheme and len(parsed.scheme) > 1:
        raise StoreError(f"{what}: {uri!r} uses an unsupported scheme {parsed.scheme!r}. Fix: use a folder path, "
                            "file:// or s3://")
    else:
        path = uri
    local = Path(path).expanduser()
    if not local.is_absolute():
        local = (relative_to or Path.cwd()) / local
    return Location(uri, "file", "", os.path.realpath(local))

