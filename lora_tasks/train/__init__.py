"""The image LoRA trainer: ``python -m lora_tasks.train --config job.yaml``."""
