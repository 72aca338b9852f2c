"""lora_tasks: every stage of the LoRA platform as a plain, typed function with a CLI.

Runs inside the training container, so nothing here imports Airflow, and heavy libraries
(torch, diffusers, transformers) are imported where they are used.
"""
