"""Turn the spec's ``auto`` values and precision choice into concrete settings for a device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lora_tasks.config import TrainingSection
from lora_tasks.errors import JobSpecError, Problem

SMALL_GPU_BYTES = 16 << 30
"""Below this much GPU memory, ``auto`` turns gradient checkpointing on and keeps batches small."""

DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class RunSettings:
    batch_size: int
    gradient_checkpointing: bool
    precision: str
    """'no', 'fp16' or 'bf16': the autocast dtype, and the dtype of the frozen weights."""

    @property
    def weight_dtype(self) -> torch.dtype:
        return DTYPES[self.precision]


def resolve_settings(cfg: TrainingSection, device: torch.device) -> RunSettings:
    """Concrete batch size, checkpointing and precision for this device.

    ``auto`` rules: CPU trains in fp32, batch 1, no checkpointing; a GPU uses bf16 where
    supported (else fp16), and a GPU under 16 GiB gets checkpointing and batch 1 (else 4).
    """
    gpu_memory = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else 0
    small = gpu_memory < SMALL_GPU_BYTES
    precision = cfg.mixed_precision
    if precision == "auto":
        precision = "no" if device.type != "cuda" else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    elif precision == "fp16" and device.type != "cuda":
        raise JobSpecError([Problem("training_config.mixed_precision",
                                    f"{precision!r} needs a CUDA GPU but this run is on {device.type}",
                                    "use 'bf16', 'no' or 'auto'")])
    batch_size = cfg.batch_size if cfg.batch_size != "auto" else (1 if small else 4)
    checkpointing = cfg.gradient_checkpointing
    if checkpointing == "auto":
        checkpointing = device.type == "cuda" and small
    return RunSettings(batch_size=batch_size, gradient_checkpointing=checkpointing, precision=precision)
