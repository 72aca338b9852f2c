"""Base and LoRA samples side by side in one PNG: a column per prompt, the base model's image above the
LoRA's, row labels on the left and the prompt wrapped under its column, so one look shows what the
adapter changes. Drawing uses Pillow's bundled font only, so the same images give the same pixels."""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageDraw, ImageFont

LABEL_WIDTH = 44
MIN_COLUMN = 128
"""Columns are at least this wide, so that small samples still leave room for their prompt."""
GAP = 4
FONT_SIZE = 12
MAX_LINES = 10
ROWS = ("base", "LoRA")
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)


def column_width(image_width: int) -> int:
    return max(image_width, MIN_COLUMN) + GAP


def cell_origin(column: int, row: int, size: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of one sample in the grid (row 0 base, row 1 LoRA)."""
    width, height = size
    return LABEL_WIDTH + column * column_width(width) + (column_width(width) - width) // 2, row * (height + GAP)


def text_top(size: tuple[int, int]) -> int:
    """Where the prompt text area starts: under both rows."""
    return len(ROWS) * (size[1] + GAP)


def wrap(text: str, font: Any, width: int) -> list[str]:
    """Whole words per line where they fit, a too-long word broken; at most MAX_LINES lines."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) <= width:
            lines[-1] = candidate
            continue
        while font.getlength(word) > width and len(word) > 1:
            cut = next((i for i in range(len(word) - 1, 0, -1) if font.getlength(word[:i]) <= width), 1)
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines if len(lines) <= MAX_LINES else [*lines[:MAX_LINES - 1], lines[MAX_LINES - 1] + " ..."]


def sample_grid(base: list[Image.Image], lora: list[Image.Image], prompts: list[str]) -> Image.Image:
    """The grid of equally sized samples; ``base[i]`` and ``lora[i]`` were made from ``prompts[i]``."""
    if not (len(base) == len(lora) == len(prompts)) or not prompts:
        raise ValueError("sample_grid needs one base and one LoRA image per prompt, and at least one prompt")
    size = base[0].size
    font = ImageFont.load_default(FONT_SIZE)
    line_height = FONT_SIZE + 3
    text_width = column_width(size[0]) - 2 * GAP
    wrapped = [wrap(prompt, font, text_width) for prompt in prompts]
    text_height = max(len(lines) for lines in wrapped) * line_height + 2 * GAP
    grid = Image.new("RGB", (LABEL_WIDTH + len(prompts) * column_width(size[0]), text_top(size) + text_height),
                     BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for row, label in enumerate(ROWS):
        draw.text((GAP, row * (size[1] + GAP) + size[1] // 2), label, fill=INK, font=font, anchor="lm")
    for column, (pair, lines) in enumerate(zip(zip(base, lora, strict=True), wrapped, strict=True)):
        for row, image in enumerate(pair):
            if image.size != size:
                raise ValueError(f"sample {column} is {image.size}, not {size} like the others")
            grid.paste(image.convert("RGB"), cell_origin(column, row, size))
        left = LABEL_WIDTH + column * column_width(size[0]) + GAP
        for number, line in enumerate(lines):
            draw.text((left, text_top(size) + GAP + number * line_height), line, fill=INK, font=font)
    return grid
