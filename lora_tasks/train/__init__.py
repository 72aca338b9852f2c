"""The LoRA trainer (``python -m lora_tasks.train --config job.yaml``) and the evaluation of what it
trained, which share one loss. May import: core, spec, intake, scheduling."""
