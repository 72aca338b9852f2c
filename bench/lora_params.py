"""What a text LoRA adds, counted from each model's config: Llama-2-7B and Llama-3-8B (their public config
values, nothing downloaded) and the tiny offline Llama, whose count is checked against peft's on the model itself.

Rank ``r`` on a linear layer of ``in`` and ``out`` features adds ``r * (in + out)`` parameters. The often
quoted "about 6.8 M" for rank 8 on LLaMA-7B's q_proj/v_proj is not what the config gives. The last line
reads ``llama2_7b_qv_r8 <parameters> share <percent>``.

    python bench/lora_params.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LLAMA_2_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 32, "vocab_size": 32000, "tie_word_embeddings": False}
"""meta-llama/Llama-2-7b-hf's config.json, the values the count uses."""
LLAMA_3_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}
"""meta-llama/Meta-Llama-3-8B's config.json (grouped-query attention: 8 key-value heads)."""
QV = ("q_proj", "v_proj")
ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
QUOTED = 6_800_000


def main() -> int:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lora_tasks.tiny.llm import build_llm
    from lora_tasks.train.param_count import lora_parameters

    print("| model | targets | rank | LoRA parameters | base parameters | share | peft counts |")
    print("|---|---|---|---|---|---|---|")
    for name, config, targets, rank in (("Llama-2-7B", LLAMA_2_7B, QV, 8), ("Llama-2-7B", LLAMA_2_7B, QV, 16),
                                        ("Llama-2-7B", LLAMA_2_7B, ALL, 8), ("Llama-3-8B", LLAMA_3_8B, QV, 8)):
        count = lora_parameters(config, targets, rank)
        print(f"| {name} | {', '.join(targets)} | {rank} | {count.lora:,} | {count.base:,} | {count.share:.4%} "
              "| (config only) |")
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_llm(Path(tmp) / "llm")
        config = json.loads((folder / "config.json").read_text())
        for targets, rank in ((QV, 8), (ALL, 8)):
            count = lora_parameters(config, targets, rank)
            model = get_peft_model(AutoModelForCausalLM.from_pretrained(folder),
                                   LoraConfig(r=rank, target_modules=list(targets)))
            trainable, _ = model.get_nb_trainable_parameters()
            print(f"| tiny Llama | {', '.join(targets)} | {rank} | {count.lora:,} | {count.base:,} | "
                  f"{count.share:.4%} | {trainable:,} ({'equal' if trainable == count.lora else 'DIFFERS'}) |")
    headline = lora_parameters(LLAMA_2_7B, QV, 8)
    print(f"the quoted 'about 6.8 M' is {QUOTED / headline.lora:.2f}x the count from the config")
    print(f"llama2_7b_qv_r8 {headline.lora} share {100 * headline.share:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
