"""The filter's decode check, run in worker processes: the whole image decoded (truncation and damage
show), its perceptual hash, and for an image with data after its end a clean PNG of its pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import imagehash  # imported by the parent before it forks: each worker would pay its scipy import again
import numpy as np
from PIL import Image, ImageOps

from lora_tasks.intake.pixels import to_rgb
from lora_tasks.intake.scan import error_text, unlimited_pixels

PHASH_INPUT = 32
"""imagehash.phash's own working size (hash_size 8 x highfreq_factor 4)."""
PHASH_SIZE = 8
DCT_LOW_ROWS = 2 * np.cos(np.pi * np.outer(np.arange(PHASH_SIZE), 2 * np.arange(PHASH_INPUT) + 1) / (2 * PHASH_INPUT))
"""The first rows of the unnormalised DCT-II matrix (scipy.fftpack.dct's type 2): the only ones phash keeps."""
DEEP_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


def perceptual_hash(image: Image.Image) -> imagehash.ImageHash:
    """``imagehash.phash``, bit for bit on real images (a test compares them), with its two full
    32-point DCTs (scipy.fftpack, the slowest part of the filter after decoding) replaced by the
    eight rows of the DCT matrix whose coefficients the hash keeps. On a flat image the kept
    coefficients are rounding noise, and the two may disagree on bits that mean nothing there."""
    small = image.convert("L").resize((PHASH_INPUT, PHASH_INPUT), Image.Resampling.LANCZOS)
    low = DCT_LOW_ROWS @ np.asarray(small, dtype=np.float64) @ DCT_LOW_ROWS.T
    return imagehash.ImageHash(low > np.median(low))


def check_image(item: tuple[str, str | None, tuple[int, int, int]]) -> dict[str, Any]:
    """Decode the whole image (catches truncation and corruption) and take its perceptual hash; with
    a ``clean`` path, also write its pixels there as a PNG (an image with data after its end).

    RGB and grey JPEGs are decoded with libjpeg's DCT scaling: every compressed byte is still
    entropy-decoded, so damage is caught as before, but the inverse DCT runs at half size in
    grayscale, which is all the hash needs (half the time of a full colour decode). Every other
    mode is converted to RGB the way training sees it (``to_rgb``) before it is reduced.
    """
    path, clean, background = item
    try:
        with unlimited_pixels(), Image.open(path) as image:  # the limit was enforced from the header
            if image.format == "JPEG" and image.mode in ("RGB", "L") and clean is None:
                image.draft("L", (image.width // 2, image.height // 2))
            image.load()
            if clean is not None:
                _write_png(to_rgb(ImageOps.exif_transpose(image), background), Path(clean))
            picture = image if image.mode in ("RGB", "L") else to_rgb(image, background)
            # imagehash LANCZOS-resizes the whole image to 32x32, which costs as much as decoding it;
            # a box reduction to >= 64 px first (one C pass) makes the hash nearly free
            factor = max(1, min(picture.size) // (2 * PHASH_INPUT))
            return {"phash": str(perceptual_hash(picture.reduce(factor))), "transparent": image.has_transparency_data}
    except Exception as exc:  # Pillow raises many types for corrupt data
        return {"error": error_text(exc, path, clean)}


def _write_png(image: Image.Image, target: Path) -> None:
    partial = target.with_name(f".{target.name}.partial")
    image.save(partial, "PNG")
    partial.replace(target)


def conversion_notes(mode: str | None, frames: int | None, transparent: bool) -> list[str]:
    """What a user should know about how a kept image's pixels were read (the word before ':' is its kind)."""
    notes = []
    if (frames or 1) > 1:
        notes.append(f"animated: {frames} frames, the first is used")
    if transparent:
        notes.append("transparency: its transparent pixels are composited on dataset.background")
    if mode in DEEP_MODES:
        notes.append(f"deep: {mode} pixels are scaled to 8 bits")
    if mode == "CMYK":
        notes.append("cmyk: converted to RGB")
    return notes
