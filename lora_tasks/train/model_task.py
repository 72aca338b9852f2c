"""The seam between the one training loop and what a job trains: images on a diffusion UNet, or text on a
causal language model.

:class:`lora_tasks.train.trainer.LoraTrainer` owns everything the two share (the output folder's lock,
optimizer and schedule, checkpoints and exact resume, the batch order, metrics, progress, the summary and
the atomic export). A ``ModelTask`` owns the rest: which files are the data, how the model is loaded and
given its LoRA, what one micro-batch's loss is, and which files the adapter is written as.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from lora_tasks.train.buckets import Size

@dataclass(frozen=True)
class RunRecord:
    """What the loop did, for the task's metadata and summary."""

    steps: int
    epochs: int
    started_at: datetime
    finished_at: datetime
    base_model_sha256: str


class ModelTask(Protocol):
    module: torch.nn.Module
    """The model that carries the LoRA (the UNet, or the peft-wrapped language model)."""
    target_modules: list[str]
    buckets: list[Size]
    """One per unit of data the batch order draws from; a batch never mixes buckets."""
    repeats: list[int]
    """Times each unit is seen per epoch."""
    effect_name: str
    """The summary's key for :meth:`effect`'s figures."""
    warnings: list[str]
    """What :meth:`prepare` found worth telling the user (the summary lists them)."""

    def collect(self) -> None:
        """List the dataset and fail on bad input before any model loads."""

    def data_fingerprint(self) -> str:
        """Changes when the data the run trains on changes."""

    def prepare(self) -> None:
        """Load the frozen model, attach the LoRA (trainable weights in fp32), ready the data."""

    def loss(self, indices: list[int], generator: torch.Generator) -> torch.Tensor:
        """The loss of one micro-batch of these units (the trainer runs it under autocast)."""

    def effect(self, seed: int, items: int) -> tuple[float, float]:
        """A fixed measurement on the first ``items`` training units without and with the LoRA: (base, lora)."""

    def sample(self, step: int) -> list[str]:
        """Write what the LoRA makes of the sample prompts at ``step`` into the output folder; the files' paths
        there (the trainer runs it in eval mode, without gradients, on a fork of the global RNG)."""

    def facts(self) -> dict[str, Any]:
        """The summary's description of the data trained on."""

    def write_weights(self, folder: Path, record: RunRecord) -> None:
        """Write the adapter in every format the spec asks for into ``folder``."""
