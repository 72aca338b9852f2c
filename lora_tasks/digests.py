"""A file's digest as every manifest of ours records it (published versions, training summaries)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def file_digest(path: Path) -> dict[str, Any]:
    """sha256 and size in bytes, read in chunks by hashlib."""
    with path.open("rb") as f:
        return {"sha256": hashlib.file_digest(f, "sha256").hexdigest(), "bytes": path.stat().st_size}
