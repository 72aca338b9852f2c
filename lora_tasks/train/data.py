"""The training set: which images, with which captions, how often, at which size.

Conventions follow kohya-ss, which most of our users come from: a sidecar caption file
beside each image wins over the file name, and a top-level folder named ``<N>_<name>``
repeats its images N times per epoch.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lora_tasks.colours import parse_background
from lora_tasks.errors import DatasetError
from lora_tasks.intake.captions import clean, filename_caption, with_trigger
from lora_tasks.intake.pixels import to_rgb
from lora_tasks.spec.schema import DatasetSection
from lora_tasks.train.buckets import Size, resize_to_bucket

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif")
REPEATS_FOLDER = re.compile(r"^(\d+)_(.+)$")
EXIF_ORIENTATION = 0x0112
ROTATED_ORIENTATIONS = {5, 6, 7, 8}


@dataclass(frozen=True)
class TrainingImage:
    path: Path
    relpath: str
    caption: str
    repeats: int
    folder: str
    size: Size
    """Upright (EXIF-corrected) width and height."""
    background: tuple[int, int, int] = (255, 255, 255)
    """What transparent pixels are composited on (dataset.background)."""


def collect_images(root: Path, dataset: DatasetSection) -> list[TrainingImage]:
    """The training images under a folder, or listed in an intake manifest (``*.jsonl``), in a stable order."""
    if root.suffix == ".jsonl" and root.is_file():
        return _from_manifest(root, dataset)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist. Fix: set dataset.uri or --dataset to a folder "
                           "of images")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise DatasetError(f"dataset folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)}). Fix: add images "
                           "or point dataset.uri at the right folder")
    return [_describe(root, path, dataset) for path in paths]


def _from_manifest(manifest: Path, dataset: DatasetSection) -> list[TrainingImage]:
    """Kept, captioned rows of the intake stages; captions there are final (trigger word included)."""
    from lora_tasks.intake.manifest import read_rows

    rows = [r for r in read_rows(manifest) if r.role == "sample" and not r.reason and r.local_path]
    if not rows:
        raise DatasetError(f"manifest {manifest} lists no usable images. Fix: check the filter stage's "
                           "rejected.jsonl")
    return [_item(Path(str(r.local_path)), PurePosixPath(r.path),
                  with_trigger(r.caption or filename_caption(r.path), dataset.trigger_word), dataset)
            for r in sorted(rows, key=lambda r: r.path)]


def _describe(root: Path, path: Path, dataset: DatasetSection) -> TrainingImage:
    relpath = PurePosixPath(path.relative_to(root).as_posix())
    return _item(path, relpath, _caption(path, dataset), dataset)


def _item(path: Path, relpath: PurePosixPath, caption: str, dataset: DatasetSection) -> TrainingImage:
    top = relpath.parts[0] if len(relpath.parts) > 1 else ""
    match = REPEATS_FOLDER.match(top)
    repeats = int(match.group(1)) if match and int(match.group(1)) > 0 else dataset.repeats
    return TrainingImage(path=path, relpath=relpath.as_posix(), caption=caption, repeats=repeats, folder=top,
                         size=_upright_size(path), background=parse_background(dataset.background))


def _caption(path: Path, dataset: DatasetSection) -> str:
    sidecar = path.with_suffix(dataset.caption_extension)
    if sidecar.is_file():
        try:
            caption = clean(sidecar.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise DatasetError(f"caption file {sidecar} is not UTF-8 text. Fix: save it as UTF-8") from None
    else:
        caption = filename_caption(path.name)
    return with_trigger(caption, dataset.trigger_word)


def _upright_size(path: Path) -> Size:
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(EXIF_ORIENTATION) in ROTATED_ORIENTATIONS:
                width, height = height, width
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"image {path} cannot be read ({exc}). Fix: remove it or re-export it as PNG/JPEG") from None
    return width, height


def load_pixels(item: TrainingImage, bucket: Size) -> np.ndarray:
    """The image as float32 CHW in [-1, 1], upright, in 8-bit RGB (every mode, as intake read it) and
    resized to its bucket."""
    try:
        with Image.open(item.path) as image:
            image = to_rgb(ImageOps.exif_transpose(image), item.background)
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"image {item.path} cannot be decoded ({exc}). Fix: remove it or re-export it") from None
    array = np.asarray(resize_to_bucket(image, bucket), dtype=np.float32)
    return (array / 127.5 - 1.0).transpose(2, 0, 1).copy()


def dataset_fingerprint(items: list[TrainingImage]) -> str:
    """Changes when any image, caption or repeat count changes (size and mtime stand in for content)."""
    digest = hashlib.sha256()
    for item in items:
        stat = item.path.stat()
        digest.update(json.dumps([item.relpath, item.caption, item.repeats, stat.st_size, stat.st_mtime_ns]).encode())
    return digest.hexdigest()


def tag_frequency(items: list[TrainingImage]) -> dict[str, dict[str, int]]:
    """kohya's ss_tag_frequency: per folder, how often each comma-separated caption tag occurs."""
    per_folder: dict[str, Counter[str]] = {}
    for item in items:
        tags = (t.strip() for t in item.caption.split(","))
        per_folder.setdefault(item.folder or ".", Counter()).update(t for t in tags if t)
    return {folder: dict(counts) for folder, counts in per_folder.items()}
