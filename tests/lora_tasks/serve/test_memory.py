"""Cycling 300 distinct adapters through 4 pipeline slots leaves the model as large as it was with the first
4, never holds more than 4, and the process's memory flat (diffusers has leaked here, #8532): copied into
the evicted adapters' layers (hotswap) or deleting them and injecting new ones."""

from __future__ import annotations

import gc
from pathlib import Path

import psutil
import pytest

from lora_tasks.serve.cache import PipelineTier
from lora_tasks.serve.engine import Engine
from lora_tasks.serve.loader import AdapterWeights
from lora_tasks.serve.policies import make_policy
from lora_tasks.tiny.lora import random_lora

SLOTS = 4
ADAPTERS = 300
WARM_UP = 40
RANK = 64
"""Large enough that a leak of every evicted adapter (~1.4 MB each here) would show well above the bound."""
RSS_GROWTH_BOUND = 64 << 20


def model_size(engine: Engine) -> tuple[int, int]:
    """Parameters and their bytes in the UNet and the text encoder."""
    params = [p for model in (engine.pipe.unet, engine.pipe.text_encoder) for p in model.parameters()]
    return sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params)


@pytest.mark.parametrize("hotswap", [True, False], ids=["hotswap", "delete"])
def test_300_adapters_through_4_slots_keep_memory_flat(tiny_model: Path, lora_shapes: dict[str, tuple[int, int]],
                                                      hotswap: bool) -> None:
    engine = Engine(tiny_model, hotswap=hotswap)
    tier = PipelineTier(engine, slots=SLOTS, max_bytes=1 << 30, policy=make_policy("lru", SLOTS))
    process = psutil.Process()
    after_first, rss_warm, most_names = None, 0, 0
    for index in range(ADAPTERS):
        adapter = AdapterWeights(random_lora(lora_shapes, seed=index, rank=RANK))
        tier.admit(f"tenant/adapter-{index}@1", lambda: adapter)  # noqa: B023 (called at once)
        most_names = max(most_names, len(engine.adapter_names()))
        if index == SLOTS - 1:
            after_first = model_size(engine)
        if index == WARM_UP:
            gc.collect()
            rss_warm = process.memory_info().rss
    gc.collect()
    growth = process.memory_info().rss - rss_warm
    assert model_size(engine) == after_first
    assert most_names == SLOTS
    assert tier.stats.evictions == ADAPTERS - SLOTS
    assert growth < RSS_GROWTH_BOUND, f"RSS grew {growth / 2**20:.1f} MiB over {ADAPTERS - WARM_UP} adapters"
