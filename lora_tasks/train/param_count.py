"""A Llama-family model's parameters and a LoRA's, counted from the model's config alone (no weights).

A widely repeated figure says rank 8 on LLaMA-7B's ``q_proj``/``v_proj`` adds "about 6.8 M parameters";
from the config it is 32 layers x 2 projections x 8 x (4096 + 4096) = 4,194,304, or 0.062% of 6.74 B. A
LoRA on a linear layer of ``in`` and ``out`` features adds ``rank * (in + out)`` parameters (A is
rank x in, B is out x rank); the projections' features follow from the config's hidden size, heads,
key-value heads (grouped-query attention) and MLP width.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LoraCount:
    lora: int
    base: int

    @property
    def share(self) -> float:
        """The LoRA's parameters as a fraction of the base model's."""
        return self.lora / self.base


def projection_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """(in, out) features of each linear layer of one decoder layer, by the module's name."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    kv = config.get("num_key_value_heads") or heads
    inner = config["intermediate_size"]
    return {"q_proj": (hidden, heads * head_dim), "k_proj": (hidden, kv * head_dim),
            "v_proj": (hidden, kv * head_dim), "o_proj": (heads * head_dim, hidden),
            "gate_proj": (hidden, inner), "up_proj": (hidden, inner), "down_proj": (inner, hidden)}


def base_parameters(config: Mapping[str, Any]) -> int:
    """Every parameter of a ``LlamaForCausalLM`` with this config."""
    hidden, vocab, layers = config["hidden_size"], config["vocab_size"], config["num_hidden_layers"]
    shapes = projection_shapes(config)
    attention_bias = sum(shapes[name][1] for name in ("q_proj", "k_proj", "v_proj", "o_proj"))
    mlp_bias = sum(shapes[name][1] for name in ("gate_proj", "up_proj", "down_proj"))
    per_layer = (sum(fan_in * fan_out for fan_in, fan_out in shapes.values()) + 2 * hidden  # two RMSNorms
                 + (attention_bias if config.get("attention_bias") else 0)
                 + (mlp_bias if config.get("mlp_bias") else 0))
    head = 0 if config.get("tie_word_embeddings") else vocab * hidden
    return vocab * hidden + layers * per_layer + hidden + head


def lora_parameters(config: Mapping[str, Any], targets: Iterable[str], rank: int) -> LoraCount:
    """What a rank-``rank`` LoRA on ``targets`` in every decoder layer adds, beside the base's count. A target
    the model lacks raises ValueError naming the ones it has."""
    shapes = projection_shapes(config)
    targets = list(targets)
    unknown = [t for t in targets if t not in shapes]
    if unknown:
        raise ValueError(f"the model has no layer named {', '.join(unknown)}; its linear layers are "
                         f"{', '.join(shapes)}")
    per_layer = sum(rank * sum(shapes[target]) for target in targets)
    return LoraCount(config["num_hidden_layers"] * per_layer, base_parameters(config))
