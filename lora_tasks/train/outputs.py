"""What the trainer writes into its output folder, by name: light, so that the pipeline and the
billing callbacks can find an adapter and its metrics without importing torch."""

ADAPTER_DIR = "adapter"
"""Appears only once complete (written under a hidden name, then renamed)."""
CHECKPOINT_DIR = "checkpoints"
CACHE_DIR = "cache"
"""Latents and caption embeddings, with ``latent_cache: disk``."""
METRICS_FILE = "metrics.jsonl"
DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"
PEFT_FILE = "adapter_model.safetensors"
SUMMARY_FILE = "training_summary.json"
TRAINING_SAMPLES_DIR = "samples"
"""Images sampled during training (training_config.sample_every_n_steps), ``step-<step>-<prompt>.png``."""
PROGRESS_FILE = "training_samples.png"
"""The training samples in one grid, a row per step, inside the adapter folder (so it is published)."""
MERGED_DIR = "merged"
"""A text job's base model with the adapter merged in (output.merged), inside the adapter folder."""
EVAL_HEADLINE = ("images", "compared_images", "examples", "compared_examples", "held_out", "base_loss", "lora_loss",
                 "loss_ratio", "base_perplexity", "lora_perplexity", "passed")
"""The evaluation report's figures that travel beyond it: the evaluate task's return value, the registry."""
