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
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lora_tasks.config import DatasetSection
from lora_tasks.errors import DatasetError
from lora_tasks.train.buckets import Size, nearest_bucket, resize_to_bucket

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
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


def collect_images(root: Path, dataset: DatasetSection) -> list[TrainingImage]:
    """List the images under ``root`` with their captions and repeats, in a stable order."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist. Fix: set dataset.uri or --dataset to a folder "
                           "of images")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise DatasetError(f"dataset folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)}). Fix: add images "
                           "or point dataset.uri at the right folder")
    return [_describe(root, path, dataset) for path in paths]


def _describe(root: Path, path: Path, dataset: DatasetSection) -> TrainingImage:
    relpath = path.relative_to(root)
    top = relpath.parts[0] if len(relpath.parts) > 1 else ""
    match = REPEATS_FOLDER.match(top)
    repeats = int(match.group(1)) if match and int(match.group(1)) > 0 else dataset.repeats
    return TrainingImage(
        path=path,
        relpath=relpath.as_posix(),
        caption=_caption(path, dataset),
        repeats=repeats,
        folder=top,
        size=_upright_size(path),
    )


def _caption(path: Path, dataset: DatasetSection) -> str:
    sidecar = path.with_suffix(dataset.caption_extension)
    if sidecar.is_file():
        try:
            caption = " ".join(sidecar.read_text(encoding="utf-8").split())
        except UnicodeDecodeError:
            raise DatasetError(f"caption file {sidecar} is not UTF-8 text. Fix: save it as UTF-8") from None
    else:
        caption = " ".join(re.sub(r"[_\-.]+", " ", re.sub(r"[_\-]?\d+$", "", path.stem)).split())
    trigger = dataset.trigger_word
    if trigger and not re.search(rf"(^|\W){re.escape(trigger)}(\W|$)", caption):
        caption = f"{trigger}, {caption}" if caption else trigger
    return caption


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
    """The image as float32 CHW in [-1, 1], upright and resized to its bucket."""
    try:
        with Image.open(item.path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"image {item.path} cannot be decoded ({exc}). Fix: remove it or re-export it") from None
    array = np.asarray(resize_to_bucket(image, bucket), dtype=np.float32)
    return (array / 127.5 - 1.0).transpose(2, 0, 1).copy()


def assign_buckets(items: list[TrainingImage], buckets: list[Size]) -> list[Size]:
    return [nearest_bucket(item.size, buckets) for item in items]


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
