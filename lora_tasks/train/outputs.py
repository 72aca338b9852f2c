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
