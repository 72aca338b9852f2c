"""Samples in one PNG, a column per prompt and a labelled row per model: the eval's base model above the
LoRA, so one look shows what the adapter changes, or the training samples one row per step, so one look
shows the style emerge. The prompt is wrapped under its column. Drawing uses Pillow's bundled font only,
so the same images give the same pixels."""

from __future__ import annotations

from pathlib import Path
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


def cell_origin(column: int, row: int, size: tuple[int, int], label_width: int = LABEL_WIDTH) -> tuple[int, int]:
    """Top-left corner of one sample in the grid (in the eval's grid, row 0 is the base model, row 1 the LoRA)."""
    width, height = size
    return label_width + column * column_width(width) + (column_width(width) - width) // 2, row * (height + GAP)


def text_top(size: tuple[int, int], rows: int = len(ROWS)) -> int:
    """Where the prompt text area starts: under every row."""
    return rows * (size[1] + GAP)


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
    """The eval's grid of equally sized samples; ``base[i]`` and ``lora[i]`` were made from ``prompts[i]``."""
    if not (len(base) == len(lora) == len(prompts)) or not prompts:
        raise ValueError("sample_grid needs one base and one LoRA image per prompt, and at least one prompt")
    return labelled_grid([base, lora], list(ROWS), prompts)


MAX_PROGRESS_ROWS = 12
"""Sampled steps the progress grid shows at most, spread evenly and the last always among them: a long run
sampled often would otherwise make a picture too large to open (Pillow refuses ~180 Mpx)."""


def progress_grid(records: list[dict[str, Any]], root: Path, prompts: list[str]) -> Image.Image | None:
    """The samples made during training, a row per sampled step (the metrics records that list them; at most
    MAX_PROGRESS_ROWS), the files read from ``root``; None when no step has a complete set (a row whose files
    are gone is left out)."""
    complete = [r for r in records if len(r.get("sample_images") or []) == len(prompts)
                and all((root / name).is_file() for name in r["sample_images"])]
    if len(complete) > MAX_PROGRESS_ROWS:
        last = len(complete) - 1
        complete = [complete[round(i * last / (MAX_PROGRESS_ROWS - 1))] for i in range(MAX_PROGRESS_ROWS)]
    rows, labels = [], []
    for record in complete:
        names = record["sample_images"]
        row = []
        for name in names:
            with Image.open(root / name) as image:
                row.append(image.convert("RGB"))
        rows.append(row)
        labels.append(f"step {record['step']}")
    return labelled_grid(rows, labels, prompts) if rows else None


def label_width(labels: list[str]) -> int:
    """The label column: LABEL_WIDTH, or wider for longer labels ("step 12000")."""
    font = ImageFont.load_default(FONT_SIZE)
    return max(LABEL_WIDTH, max(round(font.getlength(label)) for label in labels) + 2 * GAP)


def labelled_grid(rows: list[list[Image.Image]], labels: list[str], prompts: list[str]) -> Image.Image:
    """A row of equally sized images per label (``rows[r][i]`` made from ``prompts[i]``), the label on the left
    and each prompt wrapped under its column."""
    if len(rows) != len(labels) or not prompts or any(len(row) != len(prompts) for row in rows):
        raise ValueError("labelled_grid needs one label per row and one image per prompt in every row")
    size = rows[0][0].size
    left_width = label_width(labels)
    font = ImageFont.load_default(FONT_SIZE)
    line_height = FONT_SIZE + 3
    text_width = column_width(size[0]) - 2 * GAP
    wrapped = [wrap(prompt, font, text_width) for prompt in prompts]
    text_height = max(len(lines) for lines in wrapped) * line_height + 2 * GAP
    top = text_top(size, len(rows))
    grid = Image.new("RGB", (left_width + len(prompts) * column_width(size[0]), top + text_height), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for row, label in enumerate(labels):
        draw.text((GAP, row * (size[1] + GAP) + size[1] // 2), label, fill=INK, font=font, anchor="lm")
    for row, images in enumerate(rows):
        for column, image in enumerate(images):
            if image.size != size:
                raise ValueError(f"sample {column} of row {labels[row]!r} is {image.size}, not {size} like the others")
            grid.paste(image.convert("RGB"), cell_origin(column, row, size, left_width))
    for column, lines in enumerate(wrapped):
        left = left_width + column * column_width(size[0]) + GAP
        for number, line in enumerate(lines):
            draw.text((left, top + GAP + number * line_height), line, fill=INK, font=font)
    return grid
