"""Turn a DAG run's conf (the UI form's fields, or a whole job spec) into a job spec.

The form carries the handful of keys a person fills in; ``job_spec`` (YAML text or a JSON
object) carries everything else and, when present, is the spec: the form's keys then only
fill what it leaves out. Also used by the scheduler-side policy, which must not fail: it
reads just the priority and GPU type, tolerating anything.
"""

from __future__ import annotations

from typing import Any

from lora_tasks.spec.loading import read_yaml_text

FORM_TO_SPEC = {
    "tenant": "job.tenant",
    "job_name": "job.name",
    "task": "job.task",
    "priority": "job.priority",
    "gpu_type": "job.gpu_type",
    "dataset_uri": "dataset.uri",
    "trigger_word": "dataset.trigger_word",
    "base_model": "model_config.base_model",
    "lora_rank": "model_config.lora_rank",
    "max_steps": "training_config.max_steps",
    "epochs": "training_config.epochs",
}
"""Trigger-form field -> job spec key."""

PRIORITY_WEIGHTS = {"interactive": 100, "standard": 10, "batch": 1}


def spec_data_from_conf(conf: dict[str, Any]) -> dict[str, Any]:
    """The raw job spec mapping a run asks for (not yet validated)."""
    given = conf.get("job_spec")
    if isinstance(given, str) and given.strip():
        data = read_yaml_text(given, "conf.job_spec")
    elif isinstance(given, dict):
        data = given
    else:
        data = {}
    merged = {section: dict(values) if isinstance(values, dict) else values for section, values in data.items()}
    for field, key in FORM_TO_SPEC.items():
        value = conf.get(field)
        section, leaf = key.split(".")
        if value in (None, ""):
            continue
        target = merged.setdefault(section, {})
        if isinstance(target, dict) and leaf not in target:
            target[leaf] = value
    return merged


def scheduling_hints(conf: dict[str, Any] | None, default_gpu_type: str) -> tuple[str, str]:
    """(priority, gpu type) of a run, for pool and weight; never raises."""
    try:
        data = spec_data_from_conf(conf or {})
        job = data.get("job") or {}
        priority = str(job.get("priority", "standard"))
        gpu_type = str(job.get("gpu_type", "auto"))
    except Exception:  # a broken conf fails in validate_request, with a message; here, any answer will do
        priority, gpu_type = "standard", "auto"
    if priority not in PRIORITY_WEIGHTS:
        priority = "standard"
    return priority, default_gpu_type if gpu_type == "auto" else gpu_type
