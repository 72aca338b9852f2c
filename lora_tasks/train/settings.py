"""Turn the spec's ``auto`` values and precision choice into concrete settings for a device."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from lora_tasks.errors import JobSpecError, Problem
from lora_tasks.spec.schema import JobSpec

log = logging.getLogger(__name__)
DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
GPU_LOGGING_STEPS = 10


@dataclass(frozen=True)
class RunSettings:
    batch_size: int
    gradient_checkpointing: bool
    precision: str
    """'no', 'fp16' or 'bf16': the autocast dtype, and the dtype of the frozen weights."""
    logging_steps: int = 1
    """Optimizer steps per metrics record: the loss stays on the device in between."""

    @property
    def weight_dtype(self) -> torch.dtype:
        return DTYPES[self.precision]


def resolve_settings(spec: JobSpec, device: torch.device) -> RunSettings:
    """Concrete batch size, checkpointing and precision for this device.

    On a GPU, ``auto`` values come from the memory model (lora_tasks.scheduling.recommend) for this
    GPU's memory. On a CPU: fp32, batch 1, no checkpointing. (A job run through the DAG
    arrives with these already resolved for its GPU type by validate_request.)
    """
    cfg = spec.training
    logging = cfg.logging_steps or (GPU_LOGGING_STEPS if device.type == "cuda" else 1)
    if cfg.mixed_precision == "fp16" and device.type != "cuda":
        raise JobSpecError([Problem("training_config.mixed_precision",
                                    f"'fp16' needs a CUDA GPU but this run is on {device.type}",
                                    "use 'bf16', 'no' or 'auto'")])
    autos = "auto" in (cfg.batch_size, cfg.gradient_checkpointing, cfg.mixed_precision)
    if device.type == "cuda" and autos:
        from lora_tasks.gpu_types import GpuType
        from lora_tasks.scheduling.recommend import recommend

        props = torch.cuda.get_device_properties(device)
        advice = recommend(spec, GpuType("local", props.total_memory / 2**30, bf16=torch.cuda.is_bf16_supported()))
        if not advice.fits:
            log.warning("the memory model expects this job not to fit: %s", advice.advice)
        shape = advice.shape
        return RunSettings(shape.batch_size, shape.gradient_checkpointing, shape.precision, logging)
    precision = "no" if cfg.mixed_precision == "auto" else cfg.mixed_precision
    batch_size = 1 if cfg.batch_size == "auto" else cfg.batch_size
    checkpointing = False if cfg.gradient_checkpointing == "auto" else cfg.gradient_checkpointing
    return RunSettings(batch_size=batch_size, gradient_checkpointing=checkpointing, precision=precision,
                       logging_steps=logging)
