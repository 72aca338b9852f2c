"""Records in TRL's layouts (read by :mod:`lora_tasks.intake.text_records`) turned into token ids and a loss mask.

A ``text`` record trains on every token, ``prompt``/``completion`` on the completion only, chat
``messages`` on the assistant turns only, found through the chat template's ``{% generation %}`` marks,
as TRL's ``assistant_only_loss`` does.

Batches are padded (attention mask 0 on padding) or packed: several examples in one row of ``block``
tokens, each with positions from 0 and an attention mask that keeps it from seeing the others, so a packed
example computes what it computes alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lora_tasks.errors import DatasetError

if TYPE_CHECKING:
    import torch

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
