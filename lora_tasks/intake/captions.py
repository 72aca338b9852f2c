"""Caption text rules shared by intake and training: file-name captions, trigger words, token limits."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any


def filename_caption(path: str) -> str:
    """Words from a file name: 'red_fox-in_snow_03.jpg' -> 'red fox in snow'."""
    stem = PurePosixPath(path).stem
    return " ".join(re.sub(r"[_\-.]+", " ", re.sub(r"[_\-]?\d+$", "", stem)).split())


def clean(text: str) -> str:
    return " ".join(text.split())


def with_trigger(caption: str, trigger: str | None) -> str:
    """Prepend the trigger word once: a caption that already contains it is left alone."""
    if not trigger or re.search(rf"(^|\W){re.escape(trigger)}(\W|$)", caption):
        return caption
    return f"{trigger}, {caption}" if caption else trigger


def trim_to_tokens(caption: str, tokenizer: Any) -> str:
    """Drop whole words from the end until the caption fits the text encoder (BOS/EOS excluded)."""
    limit = tokenizer.model_max_length - 2
    words = caption.split(" ")
    while len(words) > 1 and len(tokenizer(" ".join(words), add_special_tokens=False, verbose=False).input_ids) > limit:
        words.pop()
    return " ".join(words).rstrip(",;:")
