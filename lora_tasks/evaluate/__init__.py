"""The evaluate task's own command, ``python -m lora_tasks.evaluate``: the trainer's package holds the
evaluation (it shares the trainer's loss and model loading), this name is what users and pods run.
May import: core, spec, train."""
