"""The tiny causal LM loads like a hub checkpoint, its tokenizer round-trips text, its chat template marks
exactly the assistant's tokens, a rebuild is bit for bit the same, and the sample dataset is in TRL's
layouts with the style in every answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from lora_tasks.tiny.llm import VOCAB_SIZE, build_llm
from lora_tasks.tiny.text_data import SIGN_OFF, write_text_dataset

CHAT = [{"role": "user", "content": "How do I change my password?"},
        {"role": "assistant", "content": "Ahoy, matey! To sort yer password, sign in again. Fair winds, the crew."}]


def test_it_loads_with_the_auto_classes_and_generates(tiny_llm: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm)
    assert isinstance(model, LlamaForCausalLM) and len(tokenizer) == VOCAB_SIZE
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # grouped-query attention
    prompt = tokenizer.apply_chat_template(CHAT[:1], add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 5


def test_the_tokenizer_round_trips_and_the_template_masks_the_assistant(tiny_llm: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm)
    text = "Ahoy, matey! Where can I find my invoice? 42 ünïcode"
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id and tokenizer.decode(ids, skip_special_tokens=True) == text
    encoded = tokenizer.apply_chat_template(CHAT, return_dict=True, return_assistant_tokens_mask=True)
    kept = [i for i, m in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(kept) == CHAT[1]["content"] + tokenizer.eos_token
    assert encoded["input_ids"].count(tokenizer.bos_token_id) == 1


def test_a_rebuild_is_the_same_and_another_seed_is_not(tiny_llm: Path, tmp_path: Path) -> None:
    first = load_file(tiny_llm / "model.safetensors")
    again = load_file(build_llm(tmp_path / "again", seed=0) / "model.safetensors")
    other = load_file(build_llm(tmp_path / "other", seed=1) / "model.safetensors")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["model.layers.0.self_attn.q_proj.weight"],
                           other["model.layers.0.self_attn.q_proj.weight"])
    assert (tiny_llm / "tokenizer.json").read_bytes() == (tmp_path / "again" / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("layout", ["messages", "prompt_completion", "text", "txt"])
def test_the_text_dataset_is_in_trls_layouts(tmp_path: Path, layout: str) -> None:
    path = write_text_dataset(tmp_path, count=10, layout=layout)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 10
    if layout == "txt":
        assert all(line.endswith(SIGN_OFF) for line in lines)
        return
    rows = [json.loads(line) for line in lines]
    answers = {"messages": lambda r: r["messages"][-1]["content"], "prompt_completion": lambda r: r["completion"],
               "text": lambda r: r["text"]}[layout]
    assert all(answers(row).endswith(SIGN_OFF) for row in rows)
    if layout == "messages":
        assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]


def test_an_unknown_layout_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="messages, prompt_completion, text, txt"):
        write_text_dataset(tmp_path, layout="csv")
