"""What a file really is, from its first bytes rather than its name.

Magic numbers come from the ``filetype`` library; text is recognised as NUL-free UTF-8.
The extension is only used to catch files whose name lies about their content.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import filetype

HEAD_BYTES = 8192
"""Enough for every signature filetype knows (tar's sits at offset 257)."""

IMAGE_TYPES = {"jpg", "png", "webp", "gif", "bmp", "tif", "avif"}
ARCHIVE_TYPES = {"zip", "tar", "gz"}
TEXT_TYPE = "text"
PARQUET_TYPE = "parquet"
PARQUET_MAGIC = b"PAR1"

EXTENSION_CLAIMS = {
    ".jpg": "jpg", ".jpeg": "jpg", ".jpe": "jpg", ".png": "png", ".webp": "webp", ".gif": "gif", ".bmp": "bmp",
    ".tif": "tif", ".tiff": "tif", ".avif": "avif", ".heic": "heic", ".heif": "heic", ".zip": "zip", ".tar": "tar",
    ".gz": "gz", ".tgz": "gz", ".txt": TEXT_TYPE, ".jsonl": TEXT_TYPE, ".parquet": PARQUET_TYPE,
    ".md": TEXT_TYPE, ".caption": TEXT_TYPE, ".exe": "exe", ".pdf": "pdf",
}
"""What a file's extension says it is, in the names sniff() uses."""

DESCRIPTIONS = {"jpg": "a JPEG image", "png": "a PNG image", "webp": "a WebP image", "gif": "a GIF image",
                "bmp": "a BMP image", "tif": "a TIFF image",
                "avif": "an AVIF image", "heic": "a HEIC image", "zip": "a ZIP archive", "tar": "a tar archive",
                "gz": "a gzip stream", "exe": "a Windows executable", "elf": "a Linux executable",
                "pdf": "a PDF document", TEXT_TYPE: "text", PARQUET_TYPE: "a Parquet table",
                "unknown": "of unknown type"}


def sniff(head: bytes) -> tuple[str, str]:
    """(type, mime) of content starting with ``head``; type is a short name such as 'jpg' or 'text'."""
    if head.startswith(PARQUET_MAGIC):  # filetype does not know Parquet
        return PARQUET_TYPE, "application/vnd.apache.parquet"
    kind = filetype.guess(head)
    if kind is not None:
        return kind.extension, kind.mime
    if head and b"\x00" not in head and _is_utf8_prefix(head):
        return TEXT_TYPE, "text/plain"
    return "unknown", "application/octet-stream"


def _is_utf8_prefix(data: bytes) -> bool:
    """UTF-8, allowing a multi-byte character cut off at the end of the sample."""
    for cut in range(4):
        try:
            data[: len(data) - cut].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


def claimed_type(path: str) -> str | None:
    return EXTENSION_CLAIMS.get(PurePosixPath(path).suffix.lower())


def describe(kind: str) -> str:
    return DESCRIPTIONS.get(kind, f"a {kind} file")
