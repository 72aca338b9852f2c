"""What a training pod is given: host resources from the estimate, and only files it can reach."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tasks.errors import LoraTaskError
from lora_tasks.pipeline.pods import check_reachable_from_pods, pod_resources
from lora_tasks.scheduling.memory import MemoryEstimate
from lora_tasks.settings import PlatformSettings
from lora_tasks.spec.base_model import BaseModelRef, weight_files


def test_host_memory_follows_the_weights_and_the_latent_cache(tiny_model: Path, tmp_path: Path) -> None:
    ref = BaseModelRef("diffusers", str(tiny_model))
    assert pod_resources(ref, MemoryEstimate(1, {})) == {"cpu": "4", "memory": "8Gi"}  # the floor
    big = tmp_path / "big.safetensors"
    with big.open("wb") as handle:
        handle.truncate(5 * 2**30)  # sparse: 5 GiB on paper
    cached = MemoryEstimate(1, {"latent_cache": 3 * 2**30})
    assert sum(p.stat().st_size for p in weight_files(BaseModelRef("single_file", str(big)))) == 5 * 2**30
    assert pod_resources(BaseModelRef("single_file", str(big)), cached)["memory"] == f"{10 + 3 + 6}Gi"


@pytest.mark.parametrize(
    ("ref", "dataset", "message"),
    [
        (BaseModelRef("hub", "org/model"), "s3://uploads/x", "is a hub id, and training pods reach only"),
        (BaseModelRef("diffusers", "/home/me/model"), "s3://uploads/x", "/home/me/model is on this worker only"),
        (BaseModelRef("single_file", "/srv/lora/data/m.safetensors", "/opt/configs/sd15"), "s3://uploads/x",
         "/opt/configs/sd15 is on this worker only"),
        (BaseModelRef("diffusers", "/srv/lora/data/models/sd15"), "/home/me/cats", "dataset.uri: /home/me/cats"),
        (BaseModelRef("diffusers", "/srv/lora/data/models/sd15"), "file:///home/me/cats",
         "dataset.uri: file:///home/me/cats"),  # a file URI is a path on this worker, not the object store
    ],
)
def test_what_a_pod_cannot_read_is_refused(ref: BaseModelRef, dataset: str, message: str) -> None:
    with pytest.raises(LoraTaskError, match=message) as caught:
        check_reachable_from_pods(ref, dataset, PlatformSettings(runner="kubernetes", shared_data="/srv/lora/data"))
    assert "Fix:" in str(caught.value) and "/srv/lora/data" in str(caught.value)


def test_the_shared_volume_and_the_object_store_are_reachable() -> None:
    settings = PlatformSettings(runner="kubernetes", shared_data="/srv/lora/data")
    check_reachable_from_pods(BaseModelRef("diffusers", "/srv/lora/data/models/sd15"), "/srv/lora/data/up/cats",
                              settings)
    check_reachable_from_pods(BaseModelRef("diffusers", "/srv/lora/data/models/sd15"), "s3://uploads/cats", settings)
    check_reachable_from_pods(BaseModelRef("diffusers", "/srv/lora/data/models/sd15"), "file:///srv/lora/data/up/c",
                              settings)
    with pytest.raises(LoraTaskError, match="an operator sets LORA_SHARED_DATA"):
        check_reachable_from_pods(BaseModelRef("diffusers", "/srv/lora/data/models/sd15"), "s3://u/c",
                                  PlatformSettings(runner="kubernetes"))
