"""Locating the base model and fitting target modules to it, from file headers alone."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lora_tasks.errors import JobSpecError, UnsafeFileError
from lora_tasks.spec.base_model import (
    check_spec_against_model,
    resolve_base_model,
    resolve_target_modules,
    unet_layer_names,
)
from lora_tasks.spec.loading import parse_job_spec
from lora_tasks.spec.schema import ModelSection


def model(base: str | Path, **extra: object) -> ModelSection:
    return ModelSection.model_validate({"base_model": str(base), **extra})


def test_diffusers_folder_single_file_and_hub_id(tiny_model: Path, single_file: Path) -> None:
    assert resolve_base_model(model(tiny_model)).kind == "diffusers"
    ref = resolve_base_model(model(single_file, base_model_config=str(tiny_model)))
    assert (ref.kind, ref.config) == ("single_file", str(tiny_model))
    assert resolve_base_model(model("stable-diffusion-v1-5/stable-diffusion-v1-5")).kind == "hub"


def test_missing_path_names_the_resolved_location() -> None:
    with pytest.raises(JobSpecError) as caught:
        resolve_base_model(model("./models/Stable-diffusion/v1-5-pruned.safetensors"))
    problem = caught.value.problems[0]
    assert problem.key == "model_config.base_model"
    assert str(Path("models/Stable-diffusion/v1-5-pruned.safetensors").resolve()) in problem.message
    assert "hub id" in problem.fix


def test_folder_that_is_not_a_pipeline(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match="not a diffusers pipeline"):
        resolve_base_model(model(tmp_path))


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_pickles_are_refused_unless_allowed(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"not really a pickle")
    with pytest.raises(UnsafeFileError, match=r"pickled checkpoint.*weights_only=True"):
        resolve_base_model(model(path))
    assert resolve_base_model(model(path, allow_pickle=True)).kind == "single_file"


def test_layer_names_from_both_layouts_agree_on_attention(tiny_model: Path, single_file: Path) -> None:
    folder_names = unet_layer_names(resolve_base_model(model(tiny_model)))
    file_names = unet_layer_names(resolve_base_model(model(single_file, base_model_config=str(tiny_model))))
    assert folder_names and file_names
    for names in (folder_names, file_names):
        assert resolve_target_modules(["to_q", "to_out.0"], names) == (["to_q", "to_out.0"], [])


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (["q_proj", "v_proj"], ["to_q", "to_v"]),
        (["k_proj", "o_proj"], ["to_k", "to_out.0"]),
        (["q_proj", "to_q"], ["to_q"]),
    ],
)
def test_transformer_names_map_to_unet_names_with_a_warning(tiny_model: Path, requested: list[str],
                                                            expected: list[str]) -> None:
    names = unet_layer_names(resolve_base_model(model(tiny_model)))
    modules, warnings = resolve_target_modules(requested, names)
    assert modules == expected
    assert warnings and all("transformer layer name" in w for w in warnings)


@pytest.mark.parametrize("bad", ["query", "to_out", "attn1.to_qq"])
def test_unknown_target_lists_available_projections(tiny_model: Path, bad: str) -> None:
    names = unet_layer_names(resolve_base_model(model(tiny_model)))
    with pytest.raises(JobSpecError) as caught:
        resolve_target_modules(["to_q", bad], names)
    problem = caught.value.problems[0]
    assert problem.key == "model_config.target_modules"
    assert repr(bad) in problem.message
    assert "to_q, to_k, to_v, to_out.0" in problem.message


def test_check_spec_fits_modules_and_logs(tiny_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = parse_job_spec({"model_config": {"base_model": str(tiny_model), "target_modules": ["q_proj", "v_proj"]}})
    with caplog.at_level(logging.WARNING):
        fitted, ref, warnings = check_spec_against_model(spec)
    assert fitted.model.target_modules == ["to_q", "to_v"]
    assert ref.kind == "diffusers"
    assert len(warnings) == 2
    assert "'q_proj' is a transformer layer name" in caplog.text
