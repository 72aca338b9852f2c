"""The active adapter folded into the base weights: the image it draws is the unfused one's (to a pixel
value's rounding), the LoRA layers are off meanwhile, and switching among adapters and back to the base
leaves every image, the base model's included, bit for bit what it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer

from lora_tasks.serve.engine import Engine, GenerationParams
from lora_tasks.serve.fusing import Fuser
from lora_tasks.serve.loader import AdapterWeights
from lora_tasks.tiny.lora import random_lora

PARAMS = GenerationParams("sks, a teal circle", steps=2, width=64, height=64)


def pixels(engine: Engine, adapter: str | None) -> np.ndarray:
    return np.asarray(engine.generate(adapter, PARAMS), dtype=np.int16)


def test_a_fused_adapter_draws_what_the_unfused_one_does(tiny_model: Path,
                                                         lora_shapes: dict[str, tuple[int, int]]) -> None:
    weights = AdapterWeights(random_lora(lora_shapes, seed=7))
    fused, unfused = Engine(tiny_model, fuse=True), Engine(tiny_model, fuse=False)
    for engine in (fused, unfused):
        engine.load_adapter("a", weights)
    on, off = pixels(fused, "a"), pixels(unfused, "a")
    assert fused.fuser is not None and fused.fuser.fused == "a"
    name, layer = next((n, m) for n, m in fused.pipe.unet.named_modules() if isinstance(m, LoraLayer))
    assert layer.disable_adapters  # the LoRA layers are off: the delta is in the base weight
    base_weight = unfused.pipe.unet.get_submodule(name).get_base_layer().weight
    assert not torch.equal(layer.get_base_layer().weight, base_weight)
    adapted = [m.get_base_layer().weight for m in fused.pipe.unet.modules() if isinstance(m, LoraLayer)]
    assert fused.fuser.kept_bytes == sum(w.numel() * w.element_size() for w in adapted)
    assert np.abs(on - off).max() <= 2
    assert np.abs(on - pixels(Engine(tiny_model), None)).max() > 10  # and it is the adapter's image


def test_switching_leaves_every_image_bit_for_bit(tiny_model: Path, lora_shapes: dict[str, tuple[int, int]]) -> None:
    engine = Engine(tiny_model)
    base = pixels(engine, None)
    for name, seed in (("a", 1), ("b", 2)):
        engine.load_adapter(name, AdapterWeights(random_lora(lora_shapes, seed=seed)))
    first = {name: pixels(engine, name) for name in ("a", "b", None)}
    for name in ("b", "a", None, "a", "b", None, "b"):
        assert np.array_equal(pixels(engine, name), first[name]), name
    assert np.array_equal(first[None], base)
    engine.delete_adapter("b")  # while b is folded in: its delta leaves with it
    assert np.array_equal(pixels(engine, None), base)


def test_dora_layers_are_not_folded(tiny_model: Path) -> None:
    unet = Engine(tiny_model, fuse=False).pipe.unet
    inject_adapter_in_model(LoraConfig(r=4, target_modules=["to_q"], use_dora=True), unet, adapter_name="dora")
    inject_adapter_in_model(LoraConfig(r=4, target_modules=["to_q"]), unet, adapter_name="plain")
    fuser = Fuser(unet)
    before = {name: w.clone() for name, w in unet.named_parameters() if "base_layer" in name}
    assert fuser.fuse("plain") and fuser.fused == "plain"
    assert not fuser.fuse("dora") and fuser.fused is None
    assert not fuser.fuse("absent") and fuser.fused is None
    assert all(torch.equal(w, before[name]) for name, w in unet.named_parameters() if "base_layer" in name)
