"""Airflow-specific pieces: run policies, the off-peak wait, the training runners, a local stack.

Everything here may import Airflow; the work itself lives in ``lora_tasks``.
"""
