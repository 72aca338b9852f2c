"""Offline models and sample data for tests, the demo and benchmarks: real architectures, random seeded weights.
May import: core, scheduling. Production code never imports this package; a user points the job spec at a real model.

Nothing may download weights here, yet the loading, training and export code must be the real thing,
so these are the real model classes with seeded random weights, saved in the standard formats.

    python -m lora_tasks.tiny model OUT_DIR [--arch tiny|tiny-m|tiny-l|sd15] [--seed 0]
    python -m lora_tasks.tiny blip OUT_DIR [--seed 0]           # a tiny BLIP captioner
    python -m lora_tasks.tiny clip OUT_DIR [--seed 0]           # a tiny CLIP model (evaluate's CLIP score)
    python -m lora_tasks.tiny llm OUT_DIR [--seed 0]            # a tiny Llama causal LM and its BPE tokenizer
    python -m lora_tasks.tiny dataset OUT_DIR [--count 24] [--seed 0]
    python -m lora_tasks.tiny text-dataset OUT_DIR [--layout messages|prompt_completion|text|txt] [--count 64]
    python -m lora_tasks.tiny single-file PIPELINE_DIR OUT.safetensors
"""
