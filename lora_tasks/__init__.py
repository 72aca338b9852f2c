"""The library: every stage of the LoRA platform as a plain, typed function with a CLI, one package per
concern, and the core modules (errors, settings, gpu_types, cli, digests, clock), which may import only each other.

It runs inside the training container and the serving process, so nothing here imports Airflow, and
heavy libraries (torch, diffusers, transformers) are imported where they are used.
"""
