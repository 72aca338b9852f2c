"""Text datasets in TRL's layouts: read from .txt, .jsonl and .parquet, malformed files named with the line
and the fix, the loss only on completions and assistant turns, and padded or packed batches whose
examples compute exactly what they compute alone."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lora_tasks.errors import DatasetError
from lora_tasks.intake.text_records import read_records
from lora_tasks.tiny.text_data import write_text_dataset
from lora_tasks.train.text_examples import IGNORE, TextExample, pack, packed_batch, padded_batch, tokenize

CHAT = [{"role": "user", "content": "Where is my invoice?"},
        {"role": "assistant", "content": "Ahoy, matey! Open the settings page. Fair winds, the crew."}]


@pytest.fixture(scope="module")
def tokenizer(tiny_llm: Path):
    return AutoTokenizer.from_pretrained(tiny_llm)


def trained_text(example: TextExample, tokenizer) -> str:
    return tokenizer.decode([t for t, m in zip(example.input_ids, example.loss_mask, strict=True) if m])


def test_each_layout_trains_on_what_trl_trains_on(tmp_path: Path, tokenizer) -> None:
    messages = tokenize({"messages": CHAT}, tokenizer)
    assert trained_text(messages, tokenizer) == CHAT[1]["content"] + "</s>"
    completion = tokenize({"prompt": "Where is my invoice?", "completion": " Ahoy, matey!"}, tokenizer)
    assert trained_text(completion, tokenizer) == " Ahoy, matey!</s>"
    chat_completion = tokenize({"prompt": CHAT[:1], "completion": CHAT[1:]}, tokenizer)
    assert trained_text(chat_completion, tokenizer).startswith("Ahoy, matey!")
    assert "invoice" not in trained_text(chat_completion, tokenizer)
    text = tokenize({"text": "Ahoy, matey!"}, tokenizer)
    assert all(text.loss_mask) and text.input_ids[-1] == tokenizer.eos_token_id


@pytest.mark.parametrize("layout", ["messages", "prompt_completion", "text", "txt"])
def test_the_sample_dataset_reads_in_every_layout(tmp_path: Path, tokenizer, layout: str) -> None:
    records = read_records(write_text_dataset(tmp_path, count=8, layout=layout))
    examples = [tokenize(r, tokenizer) for r in records]
    assert len(examples) == 8
    assert all(trained_text(e, tokenizer).rstrip("</s>").endswith("Fair winds, the crew.") for e in examples)


def test_parquet_reads_like_jsonl(tmp_path: Path) -> None:
    jsonl = write_text_dataset(tmp_path, count=5, layout="messages")
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    assert read_records(tmp_path / "train.parquet") == read_records(jsonl)


@pytest.mark.parametrize(("content", "message"), [
    ('{"text": "a"}\n{"text": ', "line 2 is not JSON"),
    ('{"input": "a", "output": "b"}\n', "line 1 has the keys input, output, none of TRL's layouts. Fix"),
    ('{"text": "a"}\n{"prompt": "q", "completion": "a"}\n', "line 2 is in the prompt_completion layout, line 1 in"),
    ('{"messages": [{"role": "user", "content": "hi"}]}\n', "has no assistant message"),
    ('{"messages": [{"role": "bot", "content": "hi"}]}\n', r"'messages'\[0\] is not a message with a role"),
    ('{"prompt": "q", "completion": [{"role": "assistant", "content": "a"}]}\n', "both be strings or both message"),
    ('["text"]\n', "line 1 is a JSON list, not an object"),
    ("\n\n", "holds no records"),
])
def test_a_malformed_file_is_named_with_its_line_and_the_fix(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message) as error:
        read_records(path)
    assert str(path) in str(error.value) and "Fix" in str(error.value)


@pytest.mark.parametrize("name", ["train.txt", "train.jsonl"])
def test_a_file_that_is_not_utf8_is_named_with_the_fix(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes('{"text": "café"}\n'.encode("latin-1"))
    with pytest.raises(DatasetError, match=r"train\.\w+ is not UTF-8 text \(byte 13 is not UTF-8\)\. Fix: save it as"):
        read_records(path)


def test_another_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"\.txt, \.jsonl, \.parquet, not \.csv"):
        read_records(tmp_path / "train.csv")


@pytest.fixture(scope="module")
def examples(tokenizer) -> list[TextExample]:
    return [tokenize({"messages": CHAT}, tokenizer), tokenize({"text": "Hello. Thank you."}, tokenizer),
            tokenize({"prompt": "Who can see my card?", "completion": " Ahoy! Only you, arr."}, tokenizer)]


def solo_logits(model, example: TextExample) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([example.input_ids])).logits[0]


def shifted_loss(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The summed next-token loss, shifted as the model's own loss is."""
    return float(torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                                                   ignore_index=IGNORE, reduction="sum"))


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_padded_and_packed_examples_compute_what_they_compute_alone(tiny_llm: Path, tokenizer, attention: str,
                                                                    examples: list[TextExample]) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llm, attn_implementation=attention).eval()
    padded = padded_batch(examples, tokenizer.pad_token_id)
    rows = pack(examples, block=128)
    packed = packed_batch(rows, tokenizer.pad_token_id)
    assert len(rows) == 1 and packed["position_ids"][0, len(examples[0].input_ids)] == 0
    with torch.no_grad():
        padded_logits = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
        packed_logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                              attention_mask=packed["attention_mask"]).logits[0]
    start = 0
    for row, example in enumerate(examples):
        n, alone = len(example.input_ids), solo_logits(model, example)
        torch.testing.assert_close(padded_logits[row, :n], alone, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(packed_logits[start:start + n], alone, atol=1e-5, rtol=1e-5)
        start += n
    assert int((padded["labels"] != IGNORE).sum()) == sum(e.trained_tokens for e in examples)
    # the same tokens are predicted, from the same context: no example learns to predict the next one's start
    assert shifted_loss(padded_logits, padded["labels"]) == pytest.approx(
        shifted_loss(packed_logits[None], packed["labels"]), rel=1e-5)
    assert padded["attention_mask"].sum() == sum(len(e.input_ids) for e in examples)


def test_packing_fills_rows_first_fit() -> None:
    sized = [TextExample([1] * n, [1] * n) for n in (6, 5, 3, 4, 12)]
    rows = pack(sized, block=10)
    assert [[len(e.input_ids) for e in row] for row in rows] == [[6, 3], [5, 4], [12]]
