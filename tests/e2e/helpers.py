"""What the end-to-end tests say to Airflow: logins, a small job, task states and logs as a person reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airflow_client.client import TaskInstanceApi

from lora_airflow.local_stack import LOGINS, AirflowConfig
from lora_airflow.rest_client import airflow_api

DAG = "lora_finetune"


def client(config: AirflowConfig, user: str) -> Any:
    return airflow_api(config.base_url, user, LOGINS[user])


def log_text(api: Any, run_id: str, task_id: str, try_number: int = 1) -> str:
    """The task log as a person reads it: each event, and the exception under it. Read raw: the client's
    model of a log line keeps only its event and time, not the exception details."""
    response = TaskInstanceApi(api).get_log_without_preload_content(DAG, run_id, task_id, try_number)
    lines = []
    for entry in json.loads(response.data)["content"]:
        if not isinstance(entry, dict):
            lines.append(str(entry))
            continue
        fields = " ".join(f"{k}={v}" for k, v in entry.items() if k not in {"event", "timestamp", "level", "logger",
                                                                               "error_detail"})
        text = f"{entry.get('level', '')}: {entry.get('event', '')} {fields}".rstrip()
        lines.append(text.replace("\n", " / "))  # one line per log event
        lines += [f"{e['exc_type']}: {e['exc_value']}" for e in entry.get("error_detail") or []]
    return "\n".join(lines)


def conf(model: Path, dataset: Path, **job: Any) -> dict[str, Any]:
    return {"job_spec": {
        "job": {"name": "api-style", "tenant": "demo", **job},
        "dataset": {"uri": str(dataset), "trigger_word": "sks", "filter": {"min_side": 48},
                    "checks": {"min_side": 48, "min_images": 5}},
        "model_config": {"base_model": str(model), "lora_rank": 4},
        "training_config": {"batch_size": 2, "max_steps": 24, "learning_rate": 5e-3, "resolution": 64},
        "eval": {"sample_steps": 4, "max_prompts": 1},
    }}  # few samples (what costs here is the stack, not them); the default quality gate


def states(api: Any, run_id: str) -> dict[str, Any]:
    return {ti.task_id: ti for ti in TaskInstanceApi(api).get_task_instances(DAG, run_id).task_instances}
