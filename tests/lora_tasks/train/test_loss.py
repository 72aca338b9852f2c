"""One measure of what an adapter does, shared by the trainer's summary and the evaluate gate."""

from __future__ import annotations

from pathlib import Path

import torch

from lora_tasks.spec.schema import ModelSection
from lora_tasks.train.loss import adapter_effect


def unet_with_lora(model: Path) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    from lora_tasks.train.models import add_lora

    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
    add_lora(unet, ModelSection(base_model=str(model), lora_rank=4))
    return unet.eval()


def test_an_untrained_adapter_changes_nothing_and_a_trained_one_does(tiny_model: Path) -> None:
    from diffusers import DDPMScheduler

    unet = unet_with_lora(tiny_model)
    scheduler = DDPMScheduler.from_pretrained(tiny_model, subfolder="scheduler")
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(1, 4, 8, 8, generator=generator), torch.randn(1, 77, 32, generator=generator))]
    base, lora = adapter_effect(unet, scheduler, batches, seed=1)
    assert base == lora  # peft starts lora_B at zero
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5, generator=generator)
    changed = adapter_effect(unet, scheduler, batches, seed=1)
    assert changed[0] == base and changed[1] != base  # the base is measured with the adapter off
    assert adapter_effect(unet, scheduler, batches, seed=1) == changed  # fixed noise, and the adapter left on
