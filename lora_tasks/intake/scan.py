"""Scan a dataset: know exactly what was uploaded before anything else touches it.

    python -m lora_tasks.intake.scan URI --out STAGE_DIR/manifest.jsonl [--workers N]

One manifest row per file: path, size, sha256, the type its bytes say (not its name),
image width/height/mode, its sidecar caption. Objects in S3 are downloaded into the stage
folder (``objects/``), archives are expanded safely into it (``expanded/``); local sources
are read in place and never modified. Problems are recorded on the row for the filter to
reject with a reason; only an unusable dataset as a whole stops the scan.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import posixpath
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lora_tasks.cli import entry_point
from lora_tasks.errors import DatasetError, StoreError
from lora_tasks.intake.archives import DEFAULT_LIMITS, ArchiveLimits, ArchiveRefused, expand_archive
from lora_tasks.intake.manifest import ManifestRow, write_rows
from lora_tasks.intake.overlap import refuse_overlap
from lora_tasks.intake.sniff import ARCHIVE_TYPES, HEAD_BYTES, IMAGE_TYPES, TEXT_TYPE, sniff
from lora_tasks.settings import platform_settings
from lora_tasks.stores import open_store
from lora_tasks.stores.base import Store, StoreObject

log = logging.getLogger(__name__)

MAX_CAPTION_BYTES = 64 * 1024
REWRITTEN = ("objects", "expanded")
"""The stage's copies of S3 objects and of archive members, rebuilt by every run."""
INLINE_BELOW = 64
CHUNKS_PER_WORKER = 32
"""Fewer files than this are described in-process: a pool would cost more than it saves."""


def describe_file(path: str) -> dict[str, Any]:
    """Size, sha256, sniffed type and (for images) the header's size and mode; errors as fields."""
    try:
        with open(path, "rb") as stream:  # noqa: PTH123 - hot path, str paths from the pool
            head = stream.read(HEAD_BYTES)
            stream.seek(0)
            digest = hashlib.file_digest(stream, "sha256")
            size = stream.tell()
    except OSError as exc:
        return {"error": "unreadable", "error_detail": exc.strerror or str(exc)}
    kind, mime = sniff(head)
    info: dict[str, Any] = {"size": size, "sha256": digest.hexdigest(), "type": kind, "mime": mime}
    if kind in IMAGE_TYPES:
        info.update(image_header(path))
    return info


def image_header(path: str) -> dict[str, Any]:
    """Width, height, mode and frame count from the header alone (no pixels are decoded)."""
    from PIL import Image

    try:
        with unlimited_pixels(), Image.open(path) as image:  # headers only: the filter enforces the limit
            width, height = image.size
            return {"width": width, "height": height, "mode": image.mode,
                    "frames": getattr(image, "n_frames", 1)}
    except Exception as exc:  # Pillow raises many types for malformed headers
        return {"error": "header_unreadable", "error_detail": f"{type(exc).__name__}: {exc}"}


@contextmanager
def unlimited_pixels() -> Iterator[None]:
    """Lift Pillow's decompression-bomb limit for a block whose pixel count was already checked."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # no check at all, so no DecompressionBombWarning either
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def parallel_map(function: Callable[[Any], Any], items: list[Any], workers: int) -> list[Any]:
    """``map`` over processes for many items, in-process for a few; order is preserved."""
    if len(items) < INLINE_BELOW or workers == 1:
        return [function(item) for item in items]
    from PIL import Image

    Image.init()  # Pillow's format plugins, loaded once here, so the forked workers inherit them
    with ProcessPoolExecutor(max_workers=workers) as pool:  # small chunks: the last one leaves a worker idle
        return list(pool.map(function, items, chunksize=max(1, len(items) // (workers * CHUNKS_PER_WORKER))))


def _materialize(store: Store, objects: list[StoreObject], folder: Path) -> dict[str, str]:
    """Local paths of readable objects; remote ones are downloaded into ``folder`` first."""
    paths: dict[str, str] = {}
    for obj in objects:
        local = store.local_path(obj.key)
        if local is None:
            local = folder / obj.key
            store.download(obj.key, local)
        paths[obj.key] = str(local)
    return paths


def _rows_for(paths: dict[str, str], uri_of: Callable[[str], str], workers: int) -> list[ManifestRow]:
    names = list(paths)
    infos = parallel_map(describe_file, [paths[n] for n in names], workers)
    return [ManifestRow(path=name, source=uri_of(name), local_path=paths[name], **info)
            for name, info in zip(names, infos, strict=True)]


def _expand(row: ManifestRow, stage: Path, limits: ArchiveLimits, workers: int) -> list[ManifestRow]:
    """Rows for an archive's members (the archive row becomes a container), or none if refused."""
    row.role = "archive"
    dest = stage / "expanded" / row.path
    try:
        members = expand_archive(Path(str(row.local_path)), str(row.type), dest, limits)
    except ArchiveRefused as exc:
        row.error, row.error_detail = exc.code, str(exc)
        return []
    paths = {f"{row.path}/{m}": str(dest / m) for m in members}
    return _rows_for(paths, lambda name: f"{row.source}#{name[len(row.path) + 1:]}", workers)


def _attach_sidecars(rows: list[ManifestRow], caption_extension: str) -> None:
    """A text file named like an image (photo.png + photo.txt) is that image's caption."""
    images: dict[str, list[ManifestRow]] = {}
    for row in rows:
        if row.type in IMAGE_TYPES:
            images.setdefault(posixpath.splitext(row.path)[0], []).append(row)
    for row in rows:
        stem, extension = posixpath.splitext(row.path)
        owners = images.get(stem, [])
        if extension.lower() != caption_extension or not owners or row.error:
            continue
        row.role = "sidecar"
        row.sidecar_of = owners[0].path
        caption = _read_caption(row)
        for owner in owners:
            owner.sidecar = row.path
            owner.caption = caption


def _read_caption(row: ManifestRow) -> str | None:
    if row.type != TEXT_TYPE or row.size > MAX_CAPTION_BYTES:
        row.error = "caption_unusable"
        row.error_detail = f"not UTF-8 text under {MAX_CAPTION_BYTES} bytes"
        return None
    try:
        text = Path(str(row.local_path)).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        row.error, row.error_detail = "caption_unusable", str(exc)
        return None
    return " ".join(text.split()) or None


def scan_dataset(uri: str, out: Path, caption_extension: str = ".txt", workers: int = 0,
                 limits: ArchiveLimits = DEFAULT_LIMITS) -> list[ManifestRow]:
    """Write the manifest of everything at ``uri`` to ``out``; the stage folder is ``out``'s parent."""
    settings = platform_settings()
    workers = workers or settings.worker_count
    stage = out.parent
    store, objects = _list_dataset(uri, stage, settings.s3_endpoint_url)
    for leftover in REWRITTEN:  # a rerun rebuilds its copies from the source
        shutil.rmtree(stage / leftover, ignore_errors=True)
    readable = [o for o in objects if o.problem is None]
    rows = [ManifestRow(path=o.key, source=store.uri_of(o.key), size=o.size, error=o.problem,
                        error_detail=_problem_text(o.problem)) for o in objects if o.problem]
    rows += _rows_for(_materialize(store, readable, stage / "objects"), store.uri_of, workers)
    for row in [r for r in rows if r.type in ARCHIVE_TYPES and not r.error]:
        rows += _expand(row, stage, limits, workers)
    _attach_sidecars(rows, caption_extension)
    write_rows(out, rows)
    log.info("scanned %s: %d files (%d from archives)", store.uri, len(rows),
             sum("#" in r.source for r in rows))
    return sorted(rows, key=lambda r: r.path)


def _list_dataset(uri: str, stage: Path, endpoint_url: str | None) -> tuple[Store, list[StoreObject]]:
    """The dataset's store and everything in it; only ever read. An unusable dataset as a whole, or a
    stage folder that would write into it, stops the scan."""
    try:
        store = open_store(uri, endpoint_url)
        if store.local_root is not None:
            if not store.local_root.is_dir():
                raise DatasetError(f"dataset {store.uri} does not exist or is not a folder. Fix: check dataset.uri")
            refuse_overlap(store.local_root, stage, REWRITTEN)
        objects = store.objects()
    except StoreError as exc:
        raise DatasetError(f"dataset {exc}") from None
    if not objects:
        raise DatasetError(f"dataset {store.uri} is empty (it holds no objects). Fix: upload images (or texts) "
                           "there first, or check dataset.uri")
    return store, objects


def _problem_text(problem: str | None) -> str | None:
    return {"not_regular_file": "a symbolic link, FIFO or device; links are not followed",
            "unsafe_name": "its name contains '..' or an empty segment and could escape its folder",
            "unreadable": "the folder cannot be listed (permission denied)"}.get(problem or "")


@entry_point
def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.intake.scan", description=__doc__.split("\n\n")[0])
    parser.add_argument("uri", help="dataset folder, file:// or s3:// URI")
    parser.add_argument("--out", type=Path, required=True, help="manifest.jsonl to write (in the stage folder)")
    parser.add_argument("--caption-extension", default=".txt")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: one per CPU core)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    rows = scan_dataset(args.uri, args.out, args.caption_extension, args.workers)
    print(f"{args.out}: {len(rows)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
