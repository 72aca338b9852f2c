"""Scan a dataset: know exactly what was uploaded before anything else touches it.

    python -m lora_tasks.intake.scan URI --out STAGE_DIR/manifest.jsonl [--workers N]
        [--archives reject_archive|keep_safe_members]

One manifest row per file: path, size, sha256, the type its bytes say (not its name),
image width/height/mode/frames, whether its format is lossless, how many bytes follow the
image's own end, and which text file is its sidecar caption (the text itself is read by the
filter, after the antivirus). Objects in S3 are downloaded into the stage folder
(``objects/``, under names made from their keys, so a key that is also a prefix of others
cannot clash), archives are expanded safely into it (``expanded/``); local sources are read
in place and never modified. Problems are recorded on the row for the filter to reject with
a reason; only an unusable dataset as a whole stops the scan.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import posixpath
import shutil
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lora_tasks.cli import entry_point
from lora_tasks.errors import DatasetError, StoreError
from lora_tasks.intake.archives import (
    DEFAULT_LIMITS,
    ArchiveLimits,
    ArchivePolicy,
    ArchiveRefused,
    Member,
    expand_archive,
)
from lora_tasks.intake.image_end import trailing_bytes
from lora_tasks.intake.manifest import ManifestRow, write_rows
from lora_tasks.intake.overlap import refuse_overlap
from lora_tasks.intake.sniff import ARCHIVE_TYPES, HEAD_BYTES, IMAGE_TYPES, sniff
from lora_tasks.settings import platform_settings
from lora_tasks.stores import open_store
from lora_tasks.stores.base import Store, StoreObject

log = logging.getLogger(__name__)

REWRITTEN = ("objects", "expanded")
"""The stage's copies of S3 objects and of archive members, rebuilt by every run."""
INLINE_BELOW = 64
CHUNKS_PER_WORKER = 32
"""Fewer files than this are described in-process: a pool would cost more than it saves."""
DOWNLOAD_THREADS = 16
WHOLE_IMAGE_BYTES = 256 << 20
"""Images up to this size are read into memory once (hash and end-of-image walk); larger ones are streamed."""
LOSSLESS_TYPES = {"png", "gif", "bmp", "tif"}


def describe_file(path: str) -> dict[str, Any]:
    """Size, sha256, sniffed type and (for images) the header's facts and the bytes after the image's
    end; problems as fields."""
    trailing = None
    try:
        with open(path, "rb") as stream:  # noqa: PTH123 - hot path, str paths from the pool
            head = stream.read(HEAD_BYTES)
            kind, mime = sniff(head)
            if kind in IMAGE_TYPES and os.fstat(stream.fileno()).st_size <= WHOLE_IMAGE_BYTES:
                data = head + stream.read()
                digest, size, trailing = hashlib.sha256(data), len(data), trailing_bytes(data, kind)
            else:
                stream.seek(0)
                digest = hashlib.file_digest(stream, "sha256")
                size = stream.tell()
    except OSError as exc:
        return {"error": "unreadable", "error_detail": exc.strerror or type(exc).__name__}
    info: dict[str, Any] = {"size": size, "sha256": digest.hexdigest(), "type": kind, "mime": mime}
    if size == 0:
        return {**info, "error": "empty", "error_detail": "0 bytes"}
    if kind in IMAGE_TYPES:
        webp_lossless = kind == "webp" and b"VP8L" in head[12:] and b"VP8 " not in head[12:]
        info.update(image_header(path), lossless=kind in LOSSLESS_TYPES or webp_lossless, trailing_bytes=trailing)
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
        return {"error": "header_unreadable", "error_detail": error_text(exc, path)}


def error_text(exc: BaseException, *paths: str | None) -> str:
    """A decoder's error on one line, without the files' paths on this machine (a workspace copy's path
    means nothing to the user, and the row names the file already)."""
    text = str(exc)
    for path in filter(None, paths):
        text = text.replace(repr(path), "the file").replace(path, "the file")
    return f"{type(exc).__name__}: {' '.join(text.split())}"


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


def local_name(key: str) -> str:
    """A file name for a key's bytes in the stage folder: fixed length, no separators, so keys that are
    prefixes of each other, hold newlines or run long never clash."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _materialize(store: Store, objects: list[StoreObject], folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Local paths of readable objects (remote ones downloaded into ``folder`` first, several at a
    time), and why any could not be downloaded."""
    paths = {o.key: str(local) for o in objects if (local := store.local_path(o.key)) is not None}
    remote = [o.key for o in objects if o.key not in paths]

    def fetch(key: str) -> str | None:
        try:
            store.download(key, folder / local_name(key))
        except OSError as exc:  # its strerror: the message would name the copy's path on this machine
            return exc.strerror or type(exc).__name__
        except Exception as exc:  # boto3 raises many types; the object is reported, the others go on
            return " ".join(str(exc).split()) or type(exc).__name__
        return None

    failures: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=DOWNLOAD_THREADS) as pool:
        for key, failure in zip(remote, pool.map(fetch, remote), strict=True):
            if failure is None:
                paths[key] = str(folder / local_name(key))
            else:
                failures[key] = failure
    return paths, failures


def _rows_for(paths: dict[str, str], uri_of: Callable[[str], str], workers: int) -> list[ManifestRow]:
    names = list(paths)
    infos = parallel_map(describe_file, [paths[n] for n in names], workers)
    return [ManifestRow(path=name, source=uri_of(name), local_path=paths[name], **info)
            for name, info in zip(names, infos, strict=True)]


def _expand(row: ManifestRow, stage: Path, limits: ArchiveLimits, policy: ArchivePolicy,
            workers: int) -> list[ManifestRow]:
    """Rows for an archive's members (the archive row becomes a container): extracted members are
    described, the others carry their problem, and all of them do when the archive is refused."""
    row.role = "archive"
    dest = stage / "expanded" / local_name(row.path)
    refusal = None
    try:
        members = expand_archive(Path(str(row.local_path)), str(row.type), dest, limits, policy)
    except ArchiveRefused as exc:
        row.error, row.error_detail, members, refusal = exc.code, str(exc), exc.members, exc

    def uri(name: str) -> str:
        return f"{row.source}#{name[len(row.path) + 1:]}"

    extracted = {f"{row.path}/{m.name}": str(dest / m.file) for m in members if m.file and refusal is None}
    rows = _rows_for(extracted, uri, workers)
    rows += [_lost_member(row, m, refusal, uri) for m in members if not (m.file and refusal is None)]
    return rows


def _unique(members: list[ManifestRow], taken: set[str]) -> list[ManifestRow]:
    """Members whose path another upload already has (S3 can hold ``a.zip`` and ``a.zip/x.jpg``) are
    refused under a path of their own, so every row keeps one path."""
    for row in members:
        if row.path in taken:
            row.path = f"{row.path} (in the archive)"
            row.error, row.error_detail = "name_clash", "another uploaded file has the same path; rename one"
            row.local_path = None
    return members


def _lost_member(archive: ManifestRow, member: Member, refusal: ArchiveRefused | None,
                 uri: Callable[[str], str]) -> ManifestRow:
    path = f"{archive.path}/{member.name}"
    if member.problem:
        code, detail = member.problem, member.detail
    else:
        code, detail = "archive_refused", f"lost with its archive {archive.path}, which was refused ({refusal})"
    return ManifestRow(path=path, source=uri(path), error=code, error_detail=detail)


def _attach_sidecars(rows: list[ManifestRow], caption_extension: str) -> None:
    """A text file named like an image (photo.png + photo.txt) is that image's caption; names are
    compared Unicode-normalised (NFC), since macOS and Windows write the same name differently. Only
    the link is made here: the filter reads the text, after the antivirus has seen it."""
    images: dict[str, list[ManifestRow]] = {}
    for row in rows:
        if row.type in IMAGE_TYPES and row.role == "sample":
            images.setdefault(_stem(row.path), []).append(row)
    for row in rows:
        owners = images.get(_stem(row.path), [])
        extension = posixpath.splitext(row.path)[1].lower()
        if extension != caption_extension.lower() or not owners or row.role != "sample":
            continue
        row.role = "sidecar"
        row.sidecar_of = owners[0].path
        for owner in owners:
            owner.sidecar = row.path


def _stem(path: str) -> str:
    return unicodedata.normalize("NFC", posixpath.splitext(path)[0])


def scan_dataset(uri: str, out: Path, caption_extension: str = ".txt", workers: int = 0,
                 limits: ArchiveLimits = DEFAULT_LIMITS,
                 archives: ArchivePolicy = "reject_archive") -> list[ManifestRow]:
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
    (stage / "objects").mkdir(parents=True, exist_ok=True)
    paths, failures = _materialize(store, readable, stage / "objects")
    rows += [ManifestRow(path=key, source=store.uri_of(key), error="unreadable",
                         error_detail=f"the download failed: {why}") for key, why in failures.items()]
    rows += _rows_for(paths, store.uri_of, workers)
    for row in [r for r in rows if r.type in ARCHIVE_TYPES and not r.error]:
        rows += _unique(_expand(row, stage, limits, archives, workers), {r.path for r in rows})
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
            "undecodable_name": "its name is not valid UTF-8 (shown with \\x escapes); rename it",
            "unreadable": "the folder cannot be listed (permission denied)"}.get(problem or "")


@entry_point
def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.intake.scan", description=__doc__.split("\n\n")[0])
    parser.add_argument("uri", help="dataset folder, file:// or s3:// URI")
    parser.add_argument("--out", type=Path, required=True, help="manifest.jsonl to write (in the stage folder)")
    parser.add_argument("--caption-extension", default=".txt")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: one per CPU core)")
    parser.add_argument("--archives", choices=["reject_archive", "keep_safe_members"], default="reject_archive",
                        help="what one unsafe archive member costs (dataset.archives)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    rows = scan_dataset(args.uri, args.out, args.caption_extension, args.workers, archives=args.archives)
    print(f"{args.out}: {len(rows)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
