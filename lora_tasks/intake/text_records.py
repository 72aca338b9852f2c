"""Text datasets in the layouts TRL's SFT trainer reads, read and checked record by record.

Layouts, one per file: ``text``, ``prompt``/``completion`` (either both strings or both lists of chat
messages) and chat ``messages``. Files: ``.txt`` (one ``text`` example a line), ``.jsonl`` and
``.parquet``. A malformed file stops with its name, line and key, and the fix. The filter stage reads
files with these functions (and judges each record); the trainer reads what the filter kept.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from lora_tasks.errors import DatasetError

LAYOUTS = {"text": ("text",), "prompt_completion": ("prompt", "completion"), "messages": ("messages",)}
ROLES = ("system", "user", "assistant")
SUFFIXES = (".txt", ".jsonl", ".parquet")


def read_records(path: Path, name: str | None = None) -> list[dict[str, Any]]:
    """Every record of a ``.txt``, ``.jsonl`` or ``.parquet`` file, checked to be in one layout and cut to
    that layout's fields (other columns, an id or a timestamp, are ignored, as TRL ignores them). ``name``
    is the file as the user named it (an archive member is extracted under a number): its suffix decides
    the format and messages show it."""
    shown = name or str(path)
    suffix = PurePosixPath(shown).suffix
    if suffix not in SUFFIXES:
        raise DatasetError(f"{shown}: a text dataset is {', '.join(SUFFIXES)}, not {suffix or 'no suffix'}. "
                           "Fix: convert it, or name it for what it holds")
    try:
        numbered = _records(path, shown)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{shown} is not UTF-8 text (byte {exc.start} is not UTF-8). Fix: save it as UTF-8") \
            from None
    if not numbered:
        raise DatasetError(f"{shown} holds no records. Fix: add examples, one a line")
    first = _layout(numbered[0][1], shown, numbered[0][0])
    for number, record in numbered:
        layout = _layout(record, shown, number)
        if layout != first:
            raise DatasetError(f"{shown} line {number} is in the {layout} layout, line {numbered[0][0]} in {first}. "
                               "Fix: one layout per file")
    return [{key: record[key] for key in LAYOUTS[first]} for _, record in numbered]


def layout_of(record: dict[str, Any]) -> str:
    """The layout of a record read by :func:`read_records`."""
    return next(name for name, keys in LAYOUTS.items() if all(k in record for k in keys))


def _records(path: Path, shown: str) -> list[tuple[int, dict[str, Any]]]:
    """(line or row number, record) of every record of ``path`` (named ``shown``); blank lines are skipped
    but still counted."""
    suffix = PurePosixPath(shown).suffix
    if suffix == ".txt":
        lines = path.read_text(encoding="utf-8").splitlines()
        return [(n, {"text": line}) for n, line in enumerate(lines, start=1) if line.strip()]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(enumerate(pq.read_table(path).to_pylist(), start=1))
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DatasetError(f"{shown} line {number} is not JSON ({exc}). Fix: one JSON object a line") from exc
        if not isinstance(record, dict):
            raise DatasetError(f"{shown} line {number} is a JSON {type(record).__name__}, not an object. Fix: "
                               'one object a line, such as {"text": "..."}')
        records.append((number, record))
    return records


def _layout(record: dict[str, Any], path: str, number: int) -> str:
    where = f"{path} line {number}"
    found = [name for name, keys in LAYOUTS.items() if all(k in record for k in keys)]
    if not found:
        raise DatasetError(f"{where} has the keys {', '.join(sorted(record)) or 'none'}, none of TRL's layouts. "
                           "Fix: give each record 'text', or 'prompt' and 'completion', or 'messages'")
    layout = found[0]
    if layout == "text" and not isinstance(record["text"], str):
        raise DatasetError(f"{where}: 'text' is a {type(record['text']).__name__}. Fix: make it a string")
    if layout == "messages":
        _check_messages(record["messages"], f"{where} 'messages'", need_assistant=True)
    if layout == "prompt_completion":
        prompt, completion = record["prompt"], record["completion"]
        if isinstance(prompt, str) != isinstance(completion, str):
            raise DatasetError(f"{where}: 'prompt' and 'completion' must both be strings or both message lists. "
                               "Fix: give both the same form")
        if not isinstance(prompt, str):
            _check_messages(prompt, f"{where} 'prompt'", need_assistant=False)
            _check_messages(completion, f"{where} 'completion'", need_assistant=True)
    return layout


def _check_messages(messages: Any, where: str, need_assistant: bool) -> None:
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"{where} is not a list of messages. Fix: a list of {{'role', 'content'}} objects")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES or \
                not isinstance(message.get("content"), str):
            raise DatasetError(f"{where}[{index}] is not a message with a role ({', '.join(ROLES)}) and string "
                               f"content: {json.dumps(message)[:120]}. Fix: {{'role': 'user', 'content': '...'}}")
    if need_assistant and not any(m["role"] == "assistant" for m in messages):
        raise DatasetError(f"{where} has no assistant message, so nothing to learn. Fix: add the answer as an "
                           "'assistant' message")
