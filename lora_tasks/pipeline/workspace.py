"""A run's workspace, ``<workspace>/<tenant>/<run_key>/<stage>/``: the one place that knows where a run's
files live (each stage owns its folder; the spec and the trainer's output are read across stages), and
the run facts (RunInfo) every stage reads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from lora_tasks.spec.loading import load_job_spec
from lora_tasks.spec.schema import JobSpec
from lora_tasks.train.outputs import ADAPTER_DIR

SPEC_FILE = "validate/job.yaml"
"""The resolved job spec, every default filled in, that every later stage reads."""
TRAIN_OUTPUT = "train/output"
"""The trainer's output folder (``--output``), the same under both runners."""


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
    """The resolved job spec (``SPEC_FILE``)."""

    @classmethod
    def new(cls, root: Path, tenant: str, name: str, priority: str, gpu_type: str, run_id: str,
            run_after: datetime) -> RunInfo:
        """A new run's facts; its workspace is ``root/<tenant>/<run_key>``, an absolute path."""
        key = run_key(run_id, run_after)
        workspace = (root / tenant / key).resolve()
        return cls(tenant, name, priority, gpu_type, key, str(workspace), str(workspace / SPEC_FILE))

    def write_spec(self, resolved: dict[str, Any]) -> None:
        path = Path(self.spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(resolved, sort_keys=False))

    @property
    def train_output(self) -> Path:
        return train_output(self.workspace)

    @property
    def adapter_dir(self) -> Path:
        return self.train_output / ADAPTER_DIR

    def stage(self, name: str) -> Path:
        path = Path(self.workspace) / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def load_spec(self) -> JobSpec:
        return load_job_spec(self.spec)

    @classmethod
    def of(cls, data: dict[str, Any]) -> RunInfo:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def train_output(workspace: str | Path) -> Path:
    """The trainer's output folder in a run's workspace."""
    return Path(workspace) / TRAIN_OUTPUT


def run_key(run_id: str, run_after: datetime) -> str:
    """A short, path-safe, stable name for a run: its time and a hash of its id."""
    return f"{run_after:%Y%m%dT%H%M%SZ}-{hashlib.sha1(run_id.encode()).hexdigest()[:8]}"
