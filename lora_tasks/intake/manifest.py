"""The dataset manifest: one JSON line per file, enriched by each intake stage in turn.

scan fills what a file is (path, size, sha256, sniffed type, image size); filter adds
whether it is kept and why not; caption adds the caption and where it came from. Files
are written whole or not at all, rows sorted by path, so a rerun yields identical bytes.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

Role = Literal["sample", "sidecar", "archive"]


class ManifestRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    """Relative to the dataset root; archive members read 'upload.zip/inner/photo.png'."""
    source: str
    """URI of the original (file://, s3://, or '<archive uri>#<member>')."""
    local_path: str | None = None
    """Where the bytes can be read on this machine: the source itself, or a workspace copy."""
    size: int = 0
    sha256: str | None = None
    type: str | None = None
    mime: str | None = None
    role: Role = "sample"
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    frames: int | None = None
    lossless: bool | None = None
    """The format keeps every pixel (PNG, GIF, BMP, TIFF, lossless WebP): of duplicates, such a copy is kept."""
    trailing_bytes: int | None = None
    """Bytes after the image's own end (an appended archive, a polyglot); 0 when it ends where it should."""
    notes: list[str] | None = None
    """What the stages did to a kept file that a user should know (first frame of an animation, re-encoded...)."""
    sidecar: str | None = None
    sidecar_of: str | None = None
    error: str | None = None
    """A scan-time problem code (unreadable, not_regular_file, unsafe_name, archive_*...)."""
    error_detail: str | None = None
    # filter
    reason: str | None = None
    message: str | None = None
    duplicate_of: str | None = None
    phash: str | None = None
    nsfw_score: float | None = None
    # caption
    caption: str | None = None
    caption_source: Literal["sidecar", "auto", "filename"] | None = None
    caption_problem: str | None = None
    """Why the image's sidecar caption was not used (it is in rejected.jsonl); the caption stage falls back."""
    # text
    records: int | None = None
    """Records kept from this text file (a rejected record has its own row, named '<file>#<record>')."""

    def note(self, text: str) -> None:
        self.notes = [*(self.notes or []), text]

    @property
    def min_side(self) -> int | None:
        return min(self.width, self.height) if self.width and self.height else None


def note_kinds(rows: Iterable[ManifestRow]) -> Counter[str]:
    """How many rows carry each kind of note (the word before a note's ':')."""
    return Counter(note.split(":")[0] for row in rows for note in row.notes or [])


def write_rows(path: Path, rows: Iterable[ManifestRow]) -> Path:
    """Write rows sorted by path, atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for row in sorted(rows, key=lambda r: r.path):
            out.write(row.model_dump_json(exclude_none=True) + "\n")
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
    return path


def read_rows(path: Path) -> list[ManifestRow]:
    with path.open(encoding="utf-8") as handle:
        return [ManifestRow.model_validate_json(line) for line in handle if line.strip()]
