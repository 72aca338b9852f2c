"""A run's workspace, ``<workspace>/<tenant>/<run_key>/<stage>/``: the one place that knows where each
stage's files live, and the run facts (RunInfo) every stage reads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lora_tasks.spec.loading import load_job_spec
from lora_tasks.spec.schema import JobSpec


@dataclass(frozen=True)
class RunInfo:
    """What every stage needs to know about its run (the validate stage's XCom)."""

    tenant: str
    name: str
    priority: str
    gpu_type: str
    run_key: str
    workspace: str
    spec: str
    """The resolved job spec, every default filled in (validate/job.yaml)."""

    def stage(self, name: str) -> Path:
        path = Path(self.workspace) / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def load_spec(self) -> JobSpec:
        return load_job_spec(self.spec)

    @classmethod
    def of(cls, data: dict[str, Any]) -> RunInfo:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def run_key(run_id: str, run_after: datetime) -> str:
    """A short, path-safe, stable name for a run: its time and a hash of its id."""
    return f"{run_after:%Y%m%dT%H%M%SZ}-{hashlib.sha1(run_id.encode()).hexdigest()[:8]}"
