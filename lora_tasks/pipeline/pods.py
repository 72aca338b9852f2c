"""What a training pod needs from its request: host resources, and files it can reach.

A pod sees only what is mounted into it (the workspace PVC and, when configured, the shared
data PVC at ``LORA_SHARED_DATA``) and, through its network policy, only the object store. A
job whose base model or dataset lives anywhere else would fail minutes later, on a GPU,
with a missing file; validate_request refuses it at once instead.
"""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import unquote, urlparse

from lora_tasks.errors import LoraTaskError
from lora_tasks.scheduling.memory import MemoryEstimate
from lora_tasks.settings import PlatformSettings
from lora_tasks.spec.base_model import BaseModelRef, weight_files

HOST_CPUS = "4"
"""Data loading is cached, so a few cores keep a GPU fed; requests equal limits (Guaranteed QoS)."""
HOST_RUNTIME_GIB = 6
"""Python, torch, the CUDA libraries and the image decoding of the caching pass."""
MIN_HOST_GIB = 8


def pod_resources(ref: BaseModelRef, estimate: MemoryEstimate) -> dict[str, str]:
    """Host CPU and memory of a training pod: the frozen weights twice over (read, then cast and
    moved to the GPU), the estimate's latent cache (kept in host memory) and the runtime."""
    weights = sum(path.stat().st_size for path in weight_files(ref))
    cache = estimate.parts.get("latent_cache", 0)
    gib = max(MIN_HOST_GIB, math.ceil((2 * weights + cache) / 2**30 + HOST_RUNTIME_GIB))
    return {"cpu": HOST_CPUS, "memory": f"{gib}Gi"}


def check_reachable_from_pods(ref: BaseModelRef, dataset_uri: str, settings: PlatformSettings) -> None:
    """Refuse a base model or dataset that a training pod could not read."""
    shared = settings.shared_data.resolve() if settings.shared_data else None
    where = f"under {shared} (LORA_SHARED_DATA, mounted into every pod)" if shared else \
        "on the shared data volume (an operator sets LORA_SHARED_DATA)"
    if ref.kind == "hub":
        raise LoraTaskError(f"model_config.base_model {ref.location!r} is a hub id, and training pods reach only "
                            f"the object store. Fix: download it {where} and point base_model at that folder")
    for path in filter(None, (ref.location, ref.config)):
        if not readable_from_pods(path, settings):
            raise LoraTaskError(f"model_config.base_model: {path} is on this worker only; training pods cannot "
                                f"read it. Fix: put the model {where}")
    if not readable_from_pods(dataset_uri, settings):
        raise LoraTaskError(f"dataset.uri: {dataset_uri} is on this worker only; training pods cannot read it. Fix: "
                            f"upload it to the object store (s3://...) or put it {where}")


def readable_from_pods(location: str, settings: PlatformSettings) -> bool:
    """Whether a training pod can read ``location``: the object store, or a path on the shared data volume."""
    if "://" in location and not location.startswith("file://"):
        return True
    shared = settings.shared_data.resolve() if settings.shared_data else None
    path = unquote(urlparse(location).path) if location.startswith("file://") else location
    return shared is not None and Path(path).resolve().is_relative_to(shared)
