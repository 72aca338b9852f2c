"""A small image dataset with one consistent, learnable visual style.

Every image shares the "sks" style (a warm vertical gradient, diagonal stripes, teal
shapes with thick dark outlines) while shapes, positions and aspect ratios vary, so a LoRA
has something real to learn and bucketing has several aspect ratios to group. Two thirds
of the images carry a sidecar caption; the rest are captioned from their file names. The
images sit in a kohya-style ``<repeats>_<name>`` folder.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

SIZES = [(64, 64), (96, 64), (64, 96), (80, 64), (64, 80), (128, 64)]
SHAPES = ["circle", "square", "triangle"]


def _style_image(rng: random.Random, size: tuple[int, int], shape: str) -> Image.Image:
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):  # warm gradient: orange at the top, purple at the bottom
        t = y / max(1, height - 1)
        draw.line([(0, y), (width, y)], fill=(int(250 - 110 * t), int(140 - 90 * t), int(60 + 120 * t)))
    for offset in range(-height, width, 12):  # diagonal stripes
        draw.line([(offset, 0), (offset + height, height)], fill=(255, 220, 150), width=2)
    side = rng.randint(min(size) // 3, min(size) // 2)
    x0 = rng.randint(2, width - side - 2)
    y0 = rng.randint(2, height - side - 2)
    box = [x0, y0, x0 + side, y0 + side]
    style = {"fill": (30, 170, 160), "outline": (20, 20, 40), "width": 4}
    if shape == "circle":
        draw.ellipse(box, **style)
    elif shape == "square":
        draw.rectangle(box, **style)
    else:
        draw.polygon([(x0 + side // 2, y0), (x0 + side, y0 + side), (x0, y0 + side)], **style)
    return image


def make_style_dataset(out: Path, count: int = 24, seed: int = 0, repeats: int = 3) -> Path:
    """Write ``count`` styled PNGs (and most of their captions) under ``out/<repeats>_sks``."""
    rng = random.Random(seed)
    folder = out / f"{repeats}_sks"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        shape = SHAPES[i % len(SHAPES)]
        size = SIZES[i % len(SIZES)]
        stem = f"teal_{shape}_on_sunset_{i:02d}"
        _style_image(rng, size, shape).save(folder / f"{stem}.png")
        if i % 3 != 2:
            (folder / f"{stem}.txt").write_text(f"a teal {shape} on a striped sunset, thick outline\n")
    return out
