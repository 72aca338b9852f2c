"""Loading into the model: a missed adapter is copied into the evicted one's layers when their shapes match
(and then computes exactly what a fresh load does), loaded fresh otherwise, and served at the scale its
file's LoRA config gives (alpha, not only the rank)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline

from lora_tasks.serve.engine import Engine, GenerationParams
from lora_tasks.serve.loader import AdapterWeights, lora_metadata
from lora_tasks.tiny.lora import random_lora, save_random_lora

PARAMS = GenerationParams("sks, a teal circle", steps=2, width=64, height=64)


def slot_tensors(engine: Engine, name: str) -> dict[str, torch.Tensor]:
    return {key: param for key, param in engine.pipe.unet.named_parameters() if f".{name}." in key}


def alone(tiny_model: Path, weights: AdapterWeights, fuse: bool = True) -> bytes:
    """The image of ``weights`` loaded fresh into a model that never held another adapter."""
    engine = Engine(tiny_model, fuse=fuse)
    engine.load_adapter("only", weights)
    return engine.generate("only", PARAMS).tobytes()


@pytest.fixture
def engine(tiny_model: Path, lora_shapes: dict[str, tuple[int, int]]) -> Engine:
    engine = Engine(tiny_model)
    engine.load_adapter("slot", AdapterWeights(random_lora(lora_shapes, seed=1, rank=4)))
    engine.generate("slot", PARAMS)
    return engine


def test_an_adapter_of_the_same_shapes_is_copied_into_the_slot(engine: Engine, tiny_model: Path,
                                                               lora_shapes: dict[str, tuple[int, int]]) -> None:
    before = slot_tensors(engine, "slot")
    new = AdapterWeights(random_lora(lora_shapes, seed=2, rank=4))
    engine.replace_adapter("slot", new)
    after = slot_tensors(engine, "slot")
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)  # same layers, new values
    assert engine.adapter_names() == {"slot"}
    assert engine.generate("slot", PARAMS).tobytes() == alone(tiny_model, new)


def test_an_adapter_of_another_rank_or_fewer_layers_is_loaded_correctly(
        engine: Engine, tiny_model: Path, lora_shapes: dict[str, tuple[int, int]]) -> None:
    other_rank = AdapterWeights(random_lora(lora_shapes, seed=3, rank=8))
    engine.replace_adapter("slot", other_rank)  # fresh: copying would pad the rank and change the sums
    assert {tuple(t.shape) for k, t in slot_tensors(engine, "slot").items() if ".lora_A." in k} >= {(8, 32)}
    assert engine.generate("slot", PARAMS).tobytes() == alone(tiny_model, other_rank)
    fewer = dict(list(random_lora(lora_shapes, seed=4, rank=8).items())[:4])  # two layers: the rest are zeroed
    engine.replace_adapter("slot", AdapterWeights(fewer))
    expected = alone(tiny_model, AdapterWeights(fewer))
    assert engine.generate("slot", PARAMS).tobytes() == expected


def test_without_hotswap_the_evicted_layers_are_deleted(tiny_model: Path,
                                                        lora_shapes: dict[str, tuple[int, int]]) -> None:
    engine = Engine(tiny_model, hotswap=False)
    engine.load_adapter("slot", AdapterWeights(random_lora(lora_shapes, seed=1)))
    before = slot_tensors(engine, "slot")
    new = AdapterWeights(random_lora(lora_shapes, seed=2))
    engine.replace_adapter("slot", new)
    after = slot_tensors(engine, "slot")
    assert after.keys() == before.keys() and not any(after[k] is before[k] for k in before)  # new layers
    assert engine.generate("slot", PARAMS).tobytes() == alone(tiny_model, new)


def test_an_adapter_is_served_at_the_alpha_its_file_gives(tiny_model: Path, tmp_path: Path,
                                                          lora_shapes: dict[str, tuple[int, int]]) -> None:
    """diffusers' own loading from the file is the reference (unfused, as diffusers runs it); the tensors
    alone would mean alpha = rank."""
    weights_file = save_random_lora(tmp_path / "a16", lora_shapes, seed=5, rank=4, alpha=16)
    data = weights_file.read_bytes()
    assert lora_metadata(data)["unet.lora_alpha"] == 16
    pipe = StableDiffusionPipeline.from_pretrained(tiny_model, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(weights_file.parent), weight_name=weights_file.name)
    reference = pipe(prompt=PARAMS.prompt, num_inference_steps=PARAMS.steps, guidance_scale=PARAMS.guidance,
                     width=64, height=64, generator=torch.Generator("cpu").manual_seed(PARAMS.seed)).images[0]
    from safetensors.torch import load

    served = alone(tiny_model, AdapterWeights(load(data), lora_metadata(data)), fuse=False)
    assert served == reference.tobytes()
    assert alone(tiny_model, AdapterWeights(load(data)), fuse=False) != served  # without the header: the wrong scale
