"""Caption text rules shared by intake and training: sidecar files, file-name captions, trigger words, token
limits."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

MAX_CAPTION_BYTES = 64 * 1024


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


def read_caption(path: str, size: int) -> tuple[str | None, tuple[str, str] | None]:
    """A sidecar's caption, or (reason, what is wrong) when it cannot be one."""
    if size > MAX_CAPTION_BYTES:
        return None, ("caption_too_large", f"is {size} bytes, over the {MAX_CAPTION_BYTES} a caption may hold")
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, ("caption_not_utf8", f"is not UTF-8 text (byte {exc.start}); save it as UTF-8")
    except OSError as exc:
        return None, ("caption_unreadable", f"cannot be read ({exc.strerror})")
    if "\x00" in text:
        return None, ("caption_not_text", "holds binary data (NUL bytes), not text")
    words = text.split()
    if not words:
        return None, ("caption_empty", "holds no words")
    return " ".join(words), None
