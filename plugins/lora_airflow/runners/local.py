"""The local runner: the trainer as a subprocess of the Airflow worker, on its CPU or local GPU."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lora_airflow.runners import COMMON
from lora_tasks.settings import PlatformSettings


def local_train(settings: PlatformSettings) -> Callable[..., Any]:
    from airflow.sdk import task

    @task(pool=f"gpu_{settings.default_gpu_type}", **COMMON)
    def train(info: dict[str, Any], checked: dict[str, Any]) -> dict[str, Any]:
        """Train in a subprocess of the worker, on its CPU or local GPU."""
        from lora_airflow.errors import stage_errors
        from lora_tasks.pipeline.training import train_locally
        from lora_tasks.pipeline.workspace import RunInfo

        with stage_errors():
            return train_locally(RunInfo.of(info), checked["train"])

    return train
