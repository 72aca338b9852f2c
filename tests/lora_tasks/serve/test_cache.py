"""The two tiers: bounds by count and bytes, a miss loaded into the slot it evicts, eviction that really
deletes the adapter from the model, the RAM tier answering a re-admission, and single-flight loads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from lora_tasks.serve.cache import PipelineTier, RamTier
from lora_tasks.serve.engine import Engine, GenerationParams
from lora_tasks.serve.loader import AdapterIntegrityError, AdapterWeights
from lora_tasks.serve.policies import make_policy
from lora_tasks.tiny.lora import random_lora

WAIT_SECONDS = 10.0


class FakeHost:
    """Records what the tier asks of the model."""

    def __init__(self) -> None:
        self.loaded: dict[str, AdapterWeights] = {}
        self.replaced: list[str] = []
        self.deleted: list[str] = []

    def adapter_bytes(self, weights: AdapterWeights) -> int:
        return weights.nbytes

    def load_adapter(self, name: str, weights: AdapterWeights) -> None:
        assert name not in self.loaded
        self.loaded[name] = weights

    def replace_adapter(self, name: str, weights: AdapterWeights) -> None:
        self.replaced.append(name)
        self.loaded[name] = weights

    def delete_adapter(self, name: str) -> None:
        self.deleted.append(name)
        del self.loaded[name]


def tensors(floats: int) -> AdapterWeights:
    return AdapterWeights({"w": torch.zeros(floats)})


def test_the_pipeline_tier_holds_at_most_its_slots() -> None:
    host = FakeHost()
    tier = PipelineTier(host, slots=2, max_bytes=1 << 30, policy=make_policy("lru", 2))
    first = tier.admit("a", lambda: tensors(10))
    second = tier.admit("b", lambda: tensors(10))
    tier.admit("a", lambda: pytest.fail("a hit must not load"))
    third = tier.admit("c", lambda: tensors(10))
    assert tier.keys() == ["a", "c"]
    assert len(host.loaded) == 2
    assert (first, second, third) == ("adapter_1", "adapter_2", "adapter_2")  # c took b's slot
    assert host.replaced == ["adapter_2"] and host.deleted == []
    assert (tier.stats.hits, tier.stats.misses, tier.stats.evictions) == (1, 3, 1)


def test_the_pipeline_tier_holds_at_most_its_bytes() -> None:
    host = FakeHost()
    tier = PipelineTier(host, slots=10, max_bytes=250 * 4, policy=make_policy("lru", 10))
    for key in "abc":
        tier.admit(key, lambda: tensors(100))
    assert tier.keys() == ["b", "c"]
    assert tier.stats.bytes == 800
    tier.admit("big", lambda: tensors(240))
    assert tier.keys() == ["big"]  # both others had to leave: one deleted, the other's slot reused
    assert host.deleted == ["adapter_2"] and host.replaced == ["adapter_1", "adapter_1"]
    tier.admit("huge", lambda: tensors(1000))  # larger than the tier: served alone
    assert tier.keys() == ["huge"] and list(host.loaded) == ["adapter_1"]


def test_the_ram_tier_holds_at_most_its_bytes_and_answers_a_readmission() -> None:
    host, loads = FakeHost(), []
    ram = RamTier(max_bytes=1 << 20, policy=make_policy("lru", 8))
    pipeline = PipelineTier(host, slots=1, max_bytes=1 << 30, policy=make_policy("lru", 1))

    def request(key: str) -> None:
        pipeline.admit(key, lambda: ram.get_or_load(key, lambda: loads.append(key) or tensors(100)))

    for key in ("a", "b", "a"):
        request(key)
    assert loads == ["a", "b"]  # a's second admission came from RAM
    assert (ram.stats.hits, ram.stats.misses) == (1, 2)
    assert (pipeline.stats.misses, pipeline.stats.evictions) == (3, 2)
    small = RamTier(max_bytes=250 * 4, policy=make_policy("lru", 8))
    for key in "abc":
        small.get_or_load(key, lambda: tensors(100))
    assert small.keys() == ["b", "c"] and small.stats.evictions == 1
    small.get_or_load("huge", lambda: tensors(1000))  # used, not kept
    assert small.keys() == ["b", "c"]


def test_concurrent_misses_on_one_key_load_it_once() -> None:
    ram = RamTier(max_bytes=1 << 20, policy=make_policy("lru", 8))
    release, calls, results = threading.Event(), [], []

    def slow_load() -> AdapterWeights:
        calls.append(1)
        assert release.wait(WAIT_SECONDS)
        return tensors(10)

    threads = [threading.Thread(target=lambda: results.append(ram.get_or_load("a", slow_load))) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while ram.stats.misses < 8:  # every thread has missed and now waits on the one load
        assert time.monotonic() < deadline
        time.sleep(0.001)
    release.set()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(results) == 8 and all(r is results[0] for r in results)


def test_a_failed_load_reaches_every_waiter_and_leaves_nothing_cached() -> None:
    ram = RamTier(max_bytes=1 << 20, policy=make_policy("lru", 8))

    def broken() -> AdapterWeights:
        raise AdapterIntegrityError("tampered")

    with pytest.raises(AdapterIntegrityError):
        ram.get_or_load("a", broken)
    assert "a" not in ram and ram.stats.bytes == 0
    assert ram.get_or_load("a", lambda: tensors(1)).tensors["w"].numel() == 1  # the next request reads the store again


def lora_modules(engine: Engine) -> dict[str, int]:
    """How many of the UNet's LoRA layers hold each adapter."""
    from peft.tuners.lora import LoraLayer

    counts: dict[str, int] = {}
    for module in engine.pipe.unet.modules():
        if isinstance(module, LoraLayer):
            for name in module.lora_A:
                counts[name] = counts.get(name, 0) + 1
    return counts


def test_eviction_deletes_the_adapter_from_the_model(tiny_model: Path,
                                                     lora_shapes: dict[str, tuple[int, int]]) -> None:
    engine = Engine(tiny_model)
    tier = PipelineTier(engine, slots=1, max_bytes=1 << 30, policy=make_policy("lru", 1))
    first = tier.admit("a", lambda: AdapterWeights(random_lora(lora_shapes, seed=1)))
    assert lora_modules(engine) == {first: len(lora_shapes)}
    second = tier.admit("b", lambda: AdapterWeights(random_lora(lora_shapes, seed=2, rank=8)))  # not in place
    assert lora_modules(engine) == {second: len(lora_shapes)}
    assert engine.adapter_names() == {second}
    params = GenerationParams("a teal circle", steps=2, width=64, height=64)
    with_b = engine.generate(second, params)
    assert engine.generate(None, params).tobytes() != with_b.tobytes()


def test_an_adapter_that_fits_no_layer_is_refused_and_leaves_nothing(tiny_model: Path) -> None:
    engine = Engine(tiny_model)
    tier = PipelineTier(engine, slots=2, max_bytes=1 << 30, policy=make_policy("lru", 2))
    wrong = {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight": torch.ones(4, 7),
             "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.up.weight": torch.ones(32, 4)}
    with pytest.raises(AdapterIntegrityError):
        tier.admit("wrong", lambda: AdapterWeights(wrong))
    assert tier.keys() == [] and engine.adapter_names() == set()
