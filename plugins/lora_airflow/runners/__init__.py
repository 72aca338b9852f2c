"""The train stage, as a local subprocess or a Kubernetes pod: one setting (LORA_RUNNER), one result.

Both run ``python -m lora_tasks.train`` on the run's workspace, so both leave the same files (the
trainer's output folder, ``lora_tasks.pipeline.workspace.TRAIN_OUTPUT``), return the same result (the
adapter's location and figures, which evaluate and publish read), and a retry of either resumes from
the newest checkpoint there. One module per runner: ``local`` and ``kubernetes_pod`` (not
``kubernetes``: Airflow's plugin loader imports each plugin file under its bare name, which would
shadow the kubernetes client).
Pool and priority weight are set per run by ``lora_airflow.policies``; the values here are
what a run gets if that policy is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from lora_airflow.billing import attempt_failed, attempt_started, attempt_succeeded
from lora_tasks.settings import PlatformSettings

COMMON: dict[str, Any] = {
    "task_id": "train",
    "priority_weight": 10,
    "weight_rule": "absolute",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "on_execute_callback": attempt_started,
    "on_success_callback": attempt_succeeded,
    "on_failure_callback": attempt_failed,  # the last try
    "on_retry_callback": attempt_failed,  # every earlier one: Airflow calls only this for them
}


def train_task(settings: PlatformSettings) -> Callable[..., Any]:
    """The train stage for this installation's runner."""
    if settings.runner == "kubernetes":
        from lora_airflow.runners.kubernetes_pod import pod_train

        return pod_train(settings)
    from lora_airflow.runners.local import local_train

    return local_train(settings)
