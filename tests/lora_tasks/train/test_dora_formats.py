"""Why a DoRA is not written in the kohya format: the arithmetic AUTOMATIC1111 and ComfyUI apply to a
kohya file's ``dora_scale``, restated from their sources, against what peft computes for the layer it
trained. peft keeps a magnitude per output row of the adapted weight; the WebUIs read one per input column
(LyCORIS's layout) or, in ComfyUI, per output row divided by the base weight's norm. If peft ever trains a
layout they read, these tests fail and the kohya export can be written."""

from __future__ import annotations

import torch
from peft import LoraConfig, inject_adapter_in_model

from lora_tasks.spec.schema import KOHYA_DORA


def trained_dora_layer() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Base weight, LoRA delta (scale included), magnitude and peft's effective weight of a DoRA layer whose
    magnitude and LoRA weights moved away from their initial values, as training moves them."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 8, bias=False))
    inject_adapter_in_model(LoraConfig(r=2, lora_alpha=2, target_modules=["0"], use_dora=True), model)
    layer = model[0]
    with torch.no_grad():
        for parameter in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
            parameter.normal_(0, 0.3)
        magnitude = layer.lora_magnitude_vector["default"].weight
        magnitude.mul_(1 + 0.2 * torch.randn_like(magnitude))
        weight = layer.get_base_layer().weight.detach().clone()
        effective = layer.eval()(torch.eye(12)).T  # what the layer computes, as a weight (no bias)
        lora = layer.lora_B["default"].weight @ layer.lora_A["default"].weight * layer.scaling["default"]
    return weight, lora, magnitude.detach().clone(), effective


def test_peft_normalises_each_output_row_of_the_adapted_weight() -> None:
    weight, lora, magnitude, effective = trained_dora_layer()
    adapted = weight + lora
    torch.testing.assert_close(effective, adapted * (magnitude / adapted.norm(dim=1)).unsqueeze(1))


def test_the_webuis_reading_of_dora_scale_cannot_give_peft_s_layer() -> None:
    weight, lora, magnitude, effective = trained_dora_layer()
    adapted = weight + lora
    # A1111's apply_weight_decompose and ComfyUI's input axis: adapted * (dora_scale / column norms), a scale per
    # column; even the least-squares best one (any dora_scale gives some column scale) misses peft's row scaling
    best_columns = ((effective * adapted).sum(dim=0) / (adapted * adapted).sum(dim=0)).unsqueeze(0)
    comfy_rows = adapted * (magnitude.unsqueeze(1) / weight.norm(dim=1, keepdim=True))  # ComfyUI's output axis
    for reading in (adapted * best_columns, comfy_rows):
        assert (reading - effective).abs().max() > 0.01 * effective.abs().max()
    assert "per input column" in KOHYA_DORA and "base weight's norm" in KOHYA_DORA


def test_a_per_row_scale_fitted_to_comfyui_holds_on_the_training_base_only() -> None:
    weight, lora, magnitude, effective = trained_dora_layer()
    # ComfyUI's output axis computes (W + dW) * dora_scale / |W| a row; this dora_scale makes it peft's on W ...
    fitted = magnitude * weight.norm(dim=1) / (weight + lora).norm(dim=1)
    comfy = (weight + lora) * (fitted / weight.norm(dim=1)).unsqueeze(1)
    torch.testing.assert_close(comfy, effective)
    # ... but on a fine-tune of that base, where WebUI users load LoRAs, peft's DoRA and the fitted file part
    tuned = weight + 0.3 * torch.randn_like(weight)
    peft_on_tuned = (tuned + lora) * (magnitude / (tuned + lora).norm(dim=1)).unsqueeze(1)
    comfy_on_tuned = (tuned + lora) * (fitted / tuned.norm(dim=1)).unsqueeze(1)
    assert (comfy_on_tuned - peft_on_tuned).abs().max() > 0.01 * peft_on_tuned.abs().max()
    assert "exact base checkpoint" in KOHYA_DORA
