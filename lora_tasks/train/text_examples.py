"""Text datasets in the layouts TRL's SFT trainer reads, turned into token ids and a loss mask.

Layouts, one per file: ``text`` (train on every token), ``prompt``/``completion`` (train on the
completion only; either both strings or both lists of chat messages) and chat ``messages`` (train on the
assistant turns only, found through the chat template's ``{% generation %}`` marks, as TRL's
``assistant_only_loss`` does). Files: ``.txt`` (one ``text`` example a line), ``.jsonl`` and
``.parquet``. A malformed file stops with its name, line and key, and the fix.

Batches are padded (attention mask 0 on padding) or packed: several examples in one row of ``block``
tokens, each with positions from 0 and an attention mask that keeps it from seeing the others, so a packed
example computes what it computes alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lora_tasks.errors import DatasetError

if TYPE_CHECKING:
    import torch

LAYOUTS = {"text": ("text",), "prompt_completion": ("prompt", "completion"), "messages": ("messages",)}
ROLES = ("system", "user", "assistant")
SUFFIXES = (".txt", ".jsonl", ".parquet")
IGNORE = -100
"""The label torch's cross entropy skips."""


@dataclass(frozen=True)
class TextExample:
    input_ids: list[int]
    loss_mask: list[int]
    """1 where the token is trained on."""

    @property
    def trained_tokens(self) -> int:
        return sum(self.loss_mask)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a ``.txt``, ``.jsonl`` or ``.parquet`` file, checked to be in one layout."""
    if path.suffix not in SUFFIXES:
        raise DatasetError(f"{path}: a text dataset is {', '.join(SUFFIXES)}, not {path.suffix or 'no suffix'}. "
                           "Fix: convert it, or name it for what it holds")
    if path.suffix == ".txt":
        return [{"text": line} for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        records = pq.read_table(path).to_pylist()
    else:
        records = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise DatasetError(f"{path} line {number} is not JSON ({exc}). Fix: one JSON object a line") from exc
            if not isinstance(record, dict):
                raise DatasetError(f"{path} line {number} is a JSON {type(record).__name__}, not an object. Fix: "
                                   'one object a line, such as {"text": "..."}')
            records.append(record)
    if not records:
        raise DatasetError(f"{path} holds no records. Fix: add examples, one a line")
    layout_of(records, path)
    return records


def layout_of(records: list[dict[str, Any]], path: Path) -> str:
    """The file's one layout; a record in another, or with a malformed field, names its line (row)."""
    first = _layout(records[0], path, 1)
    for number, record in enumerate(records, start=1):
        layout = _layout(record, path, number)
        if layout != first:
            raise DatasetError(f"{path} line {number} is in the {layout} layout, line 1 in {first}. Fix: one "
                               "layout per file")
    return first


def _layout(record: dict[str, Any], path: Path, number: int) -> str:
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


def tokenize(record: dict[str, Any], tokenizer: Any) -> TextExample:
    """Token ids and loss mask of one record, as TRL builds them: the end-of-sequence token ends a text
    example; a completion is trained on after its prompt's tokens; a conversation on its assistant turns."""
    if "messages" in record:
        encoded = tokenizer.apply_chat_template(record["messages"], return_dict=True,
                                                return_assistant_tokens_mask=True)
        if not any(encoded["assistant_masks"]):
            raise DatasetError("the tokenizer's chat template does not mark assistant turns ({% generation %}), "
                               "so the loss cannot skip the rest. Fix: use a tokenizer whose template does")
        return TextExample(list(encoded["input_ids"]), list(encoded["assistant_masks"]))
    if "prompt" in record:
        prompt, completion = record["prompt"], record["completion"]
        if isinstance(prompt, str):
            prompt_ids = tokenizer(prompt).input_ids
            ids = [*tokenizer(prompt + completion).input_ids, tokenizer.eos_token_id]
        else:
            prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                       return_dict=True)["input_ids"]
            ids = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
        cut = len(prompt_ids)
        return TextExample(list(ids), [0] * cut + [1] * (len(ids) - cut))
    ids = tokenizer(record["text"]).input_ids
    if not ids or ids[-1] != tokenizer.eos_token_id:
        ids = [*ids, tokenizer.eos_token_id]
    return TextExample(list(ids), [1] * len(ids))


def padded_batch(examples: list[TextExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded rows: attention 0 and label ``IGNORE`` on padding and on tokens not trained on."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        attention[row, :n] = 1
        labels[row, :n] = torch.where(torch.tensor(example.loss_mask, dtype=torch.bool), ids[row, :n], IGNORE)
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}


def pack(examples: list[TextExample], block: int) -> list[list[TextExample]]:
    """Examples into rows of at most ``block`` tokens, in order, first fit; one longer than a block has its
    own row (truncating is the dataset's decision, not the packer's)."""
    rows: list[list[TextExample]] = []
    room: list[int] = []
    for example in examples:
        size = len(example.input_ids)
        index = next((i for i, free in enumerate(room) if free >= size), None)
        if index is None:
            rows.append([example])
            room.append(block - size)
        else:
            rows[index].append(example)
            room[index] -= size
    return rows


def packed_batch(rows: list[list[TextExample]], pad_id: int) -> dict[str, torch.Tensor]:
    """Packed rows with positions restarting at each example and a block-diagonal causal mask (additive, as
    the model's attention takes a 4-D mask), so no example attends to another or to padding."""
    import torch

    width = max(sum(len(e.input_ids) for e in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    segments = torch.full((len(rows), width), -1, dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for s, example in enumerate(row):
            n = len(example.input_ids)
            ids[r, start:start + n] = torch.tensor(example.input_ids)
            positions[r, start:start + n] = torch.arange(n)
            mask = torch.tensor(example.loss_mask, dtype=torch.bool)
            labels[r, start:start + n] = torch.where(mask, ids[r, start:start + n], IGNORE)
            labels[r, start] = IGNORE  # nothing before it to predict it from (alone, shifting drops it too)
            segments[r, start:start + n] = s
            start += n
    causal = torch.tril(torch.ones(width, width, dtype=torch.bool))
    same = (segments[:, :, None] == segments[:, None, :]) & (segments[:, :, None] >= 0)
    allowed = (same & causal) | torch.eye(width, dtype=torch.bool)  # padding sees itself: no all-masked row
    attention = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)[:, None]
    return {"input_ids": ids, "position_ids": positions, "attention_mask": attention, "labels": labels}
