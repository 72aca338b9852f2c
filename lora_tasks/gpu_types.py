"""The GPU types this installation schedules on (include/gpu_types.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lora_tasks.errors import LoraTaskError

GPU_TAINT = "nvidia.com/gpu"
DEFAULT_TOLERATIONS: tuple[dict[str, str], ...] = ({"key": GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"},)
"""The taint NVIDIA's GPU operator and most clouds put on GPU nodes."""


@dataclass(frozen=True)
class GpuType:
    name: str
    memory_gib: float
    tflops: float = 0.0
    """Dense bf16 (fp16 on GPUs without bf16) tensor throughput: what the duration model scales by."""
    bf16: bool = False
    max_count: int = 1
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = DEFAULT_TOLERATIONS
    """Taints of this type's nodes that its training pods tolerate (Kubernetes field names)."""

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * 2**30)

    @property
    def pool(self) -> str:
        return f"gpu_{self.name}"

    def pool_for(self, priority: str, runner: str) -> str:
        """The train task's pool. With Kubernetes, interactive runs have a pool of their own, as
        large as the type's GPUs: Airflow launches their pod even when every GPU is busy, and the
        scheduler makes room by preempting the lowest-priority training pod (priority classes),
        whose task retries from its checkpoint. Locally there is nothing to preempt."""
        if runner == "kubernetes" and priority == "interactive" and self.is_gpu:
            return f"{self.pool}_interactive"
        return self.pool

    @property
    def is_gpu(self) -> bool:
        return self.memory_gib > 0


def load_gpu_types(path: Path) -> dict[str, GpuType]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LoraTaskError(f"GPU types {path} cannot be read ({exc}). Fix: check LORA_GPU_TYPES_FILE") from None
    return {name: GpuType(name, float(entry.get("memory_gib", 0)), float(entry.get("tflops", 0)),
                          bool(entry.get("bf16", False)), int(entry.get("max_count", 1)),
                          dict(entry.get("node_selector") or {}),
                          tuple(dict(t) for t in entry.get("tolerations", DEFAULT_TOLERATIONS)))
            for name, entry in (data.get("gpu_types") or {}).items()}


def resolve_gpu_type(requested: str, types: dict[str, GpuType], default: str) -> GpuType:
    name = default if requested == "auto" else requested
    if name not in types:
        raise LoraTaskError(f"job.gpu_type {requested!r} is not a GPU type of this platform. Fix: use 'auto' or "
                            f"one of {', '.join(types)}")
    return types[name]
