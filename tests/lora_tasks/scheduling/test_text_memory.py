"""The text memory model: counts from the config that match the real model, and the recommender's choices
and refusals for a Llama-2-7B job (read off its public config on the meta device, no weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_tasks.errors import LoraTaskError
from lora_tasks.gpu_types import GpuType
from lora_tasks.scheduling.recommend import check_fits, recommend
from lora_tasks.scheduling.text_memory import LLAMA_2_7B, TextShape, estimate_text_peak_memory, profile_causal_lm
from lora_tasks.spec.loading import parse_job_spec
from lora_tasks.train.param_count import base_parameters, lora_parameters

L4 = GpuType("l4-24g", 24, tflops=121, bf16=True, node_selector={"nvidia.com/gpu.product": "NVIDIA-L4"})


def llama_job(tmp_path: Path, **training: object) -> object:
    model = tmp_path / "llama-2-7b"  # the config alone: the estimate needs no weights
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(json.dumps(LLAMA_2_7B))
    return parse_job_spec({"job": {"task": "text"}, "model_config": {"base_model": str(model), "lora_rank": 8},
                           "training_config": {"max_length": 4096, **training}})


def test_the_meta_run_counts_what_the_config_says() -> None:
    profile = profile_causal_lm(LLAMA_2_7B, 256, 8, ("q_proj", "v_proj"))
    counted = lora_parameters(LLAMA_2_7B, ["q_proj", "v_proj"], 8)
    assert (profile.lora_params, profile.model_params) == (counted.lora, base_parameters(LLAMA_2_7B))
    assert (profile.lora_params, profile.model_params) == (4_194_304, 6_738_415_616)


def test_activations_grow_with_tokens_and_shrink_under_checkpointing() -> None:
    small, large = (profile_causal_lm(LLAMA_2_7B, n, 8, ("q_proj", "v_proj")) for n in (512, 1024))
    assert 1.9 < large.activation_bytes / small.activation_bytes < 2.1  # no seq x seq matrix is kept
    assert large.checkpointed_bytes < large.activation_bytes / 4
    half = estimate_text_peak_memory(LLAMA_2_7B, TextShape(1024, 1, "bf16", False, 8, ("q_proj", "v_proj")), "cuda")
    full = estimate_text_peak_memory(LLAMA_2_7B, TextShape(1024, 1, "no", False, 8, ("q_proj", "v_proj")), "cuda")
    assert half.parts["model_weights"] * 2 == full.parts["model_weights"]


def test_auto_on_a_24_gib_gpu_checkpoints_a_4k_llama_2_7b(tmp_path: Path) -> None:
    advice = recommend(llama_job(tmp_path, batch_size="auto"), L4)
    assert advice.fits and advice.shape.gradient_checkpointing and advice.shape.precision == "bf16"
    assert advice.estimate.total_bytes <= L4.memory_bytes * 0.9


def test_settings_that_cannot_fit_are_refused_with_the_estimate_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(LoraTaskError, match=r"estimated peak memory .* exceeds l4-24g's 24 GiB .* Fix: set "
                                            r"training_config.gradient_checkpointing: true"):
        check_fits(llama_job(tmp_path, batch_size=2, gradient_checkpointing=False), L4)
