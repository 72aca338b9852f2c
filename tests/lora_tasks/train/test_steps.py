"""What a prepared trainer does step by step: encoders run once, captions drop out, buckets form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lora_tasks.spec.loading import parse_job_spec
from lora_tasks.train.trainer import LoraTrainer
from tests.conftest import base_job

pytestmark = pytest.mark.slow


def prepared(model: Path, dataset: Path, out: Path, **training: Any) -> LoraTrainer:
    job = base_job(model, dataset, out)
    job["training_config"].update(training)
    dropout = training.pop("caption_dropout", None)
    if dropout is not None:
        job["training_config"].pop("caption_dropout")
        job["dataset"]["caption_dropout"] = dropout
    trainer = LoraTrainer(parse_job_spec(job), device="cpu")
    trainer.prepare()
    return trainer


def count_calls(module: torch.nn.Module, method: str) -> list[int]:
    calls = [0]
    original = getattr(module, method)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    setattr(module, method, counted)
    return calls


@pytest.mark.parametrize(("cache", "encodes_while_training"), [("memory", False), ("disk", False), ("off", True)])
def test_encoders_run_once_unless_the_cache_is_off(tiny_model: Path, style_dataset: Path, tmp_path: Path,
                                                  cache: str, encodes_while_training: bool) -> None:
    trainer = prepared(tiny_model, style_dataset, tmp_path, latent_cache=cache)
    vae = count_calls(trainer.task.models.vae, "encode")
    text = count_calls(trainer.task.models.text_encoder, "forward")
    for _ in range(4):
        trainer.train_step()
    assert (vae[0] > 0, text[0] > 0) == (encodes_while_training, encodes_while_training)


def test_caption_dropout_swaps_in_the_empty_caption(tiny_model: Path, style_dataset: Path, tmp_path: Path) -> None:
    def dropped_share(trainer: LoraTrainer) -> float:
        flags = []
        for _ in range(40):
            _, embeddings = trainer.task.micro_batch(trainer.stream.next(), trainer.generator)
            flags += [torch.equal(e, trainer.task.empty_embedding) for e in embeddings]
        return sum(flags) / len(flags)

    assert dropped_share(prepared(tiny_model, style_dataset, tmp_path / "none")) == 0.0
    assert 0.3 < dropped_share(prepared(tiny_model, style_dataset, tmp_path / "half", caption_dropout=0.5)) < 0.7


def test_images_of_different_shapes_train_in_several_buckets(tiny_model: Path, style_dataset: Path,
                                                             tmp_path: Path) -> None:
    trainer = prepared(tiny_model, style_dataset, tmp_path)
    shapes = {tuple(trainer.task.source.batch([i])[0].shape[-2:]) for i in range(len(trainer.task.items))}
    assert len(set(trainer.task.buckets)) > 1 and len(shapes) > 1
    square = prepared(tiny_model, style_dataset, tmp_path / "square", bucketing=False)
    assert len(set(square.task.buckets)) == 1
