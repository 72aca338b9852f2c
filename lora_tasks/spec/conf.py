"""Turn a DAG run's conf (the UI form's fields, or a whole job spec) into a job spec.

The form carries the handful of keys a person fills in; ``job_spec`` (YAML text or a JSON
object) carries everything else and, when present, is the spec: the form's keys then only
fill what it leaves out. Also used by the scheduler-side policy, which must not fail: it
reads just the priority and GPU type, tolerating anything.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from lora_tasks.errors import JobSpecError, Problem
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

CONF_KEYS = frozenset({*FORM_TO_SPEC, "job_spec"})
PRIORITY_WEIGHTS = {"interactive": 100, "standard": 10, "batch": 1}


def check_conf_keys(conf: dict[str, Any]) -> None:
    """Refuse a conf key that is neither a form field nor ``job_spec``: Airflow passes unknown keys
    through, and a misspelt one would otherwise be ignored without a word."""
    problems = []
    for key in sorted(set(conf) - CONF_KEYS):
        close = difflib.get_close_matches(key, sorted(CONF_KEYS), n=1)
        problems.append(Problem(
            f"conf.{key}", f"unknown key; {f'did you mean {close[0]!r}? ' if close else ''}allowed keys here: "
            f"{', '.join(sorted(CONF_KEYS))}",
            f"rename it to {close[0]!r}" if close else "put other spec keys inside job_spec"))
    if problems:
        raise JobSpecError(problems, "the run's conf")


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


def form_defaults(path: Path | None) -> tuple[dict[str, Any], str | None]:
    """What the trigger form proposes, from a job spec file: its values for the form's fields, and the
    rest of it as the form's ``job_spec`` text (so a person sees, and can edit, every other setting).
    Relative paths in it are taken from the working directory, as a job spec's are."""
    if path is None:
        return {}, None
    data = yaml.safe_load(path.read_text()) or {}
    fields = {}
    for field, key in FORM_TO_SPEC.items():
        section, leaf = key.split(".")
        values = data.get(section)
        if isinstance(values, dict) and leaf in values:
            fields[field] = values.pop(leaf)
    for field in ("dataset_uri", "base_model"):
        value = fields.get(field)
        if isinstance(value, str) and "://" not in value and Path(value).exists():  # not a hub id
            fields[field] = str(Path(value).resolve())
    rest = {section: values for section, values in data.items() if values not in ({}, None)}
    return fields, yaml.safe_dump(rest, sort_keys=False) if rest else None


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
