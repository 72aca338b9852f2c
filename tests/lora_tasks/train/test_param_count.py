"""The LoRA and base parameter counts from a config equal what peft and the model count, for the tiny
Llama (grouped-query attention) and every target set; Llama-2-7B's rank-8 q_proj/v_proj LoRA is
4,194,304 parameters, 0.062% of 6.74 B, not the "about 6.8 M" often quoted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from lora_tasks.train.param_count import lora_parameters

LLAMA_2_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 32, "vocab_size": 32000, "tie_word_embeddings": False}
"""meta-llama/Llama-2-7b-hf's config.json, the values the count uses."""
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.mark.parametrize(("targets", "rank"), [(["q_proj", "v_proj"], 8), (ALL, 4), (["k_proj", "down_proj"], 16)])
def test_the_count_equals_peft_and_the_model(tiny_llm: Path, targets: list[str], rank: int) -> None:
    config = json.loads((tiny_llm / "config.json").read_text())
    count = lora_parameters(config, targets, rank)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm)
    assert count.base == sum(p.numel() for p in model.parameters())
    trainable, _ = get_peft_model(model, LoraConfig(r=rank, target_modules=targets)).get_nb_trainable_parameters()
    assert count.lora == trainable


def test_llama_2_7b() -> None:
    count = lora_parameters(LLAMA_2_7B, ["q_proj", "v_proj"], 8)
    assert (count.lora, count.base) == (4_194_304, 6_738_415_616)
    assert f"{count.share:.3%}" == "0.062%"


def test_a_target_the_model_lacks_is_refused_with_the_candidates() -> None:
    with pytest.raises(ValueError, match="no layer named query_key_value; its linear layers are q_proj, k_proj"):
        lora_parameters(LLAMA_2_7B, ["q_proj", "query_key_value"], 8)
