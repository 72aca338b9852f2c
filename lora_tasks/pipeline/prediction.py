"""How long a run's training will take: predicted from its workload (FLOPs, images, steps) and the
ledger's history for its GPU type, and recorded in the ledger so the planner and the off-peak wait see it."""

from __future__ import annotations

import math

from lora_tasks.gpu_types import load_gpu_types
from lora_tasks.ledger.store import open_ledger
from lora_tasks.pipeline.workspace import RunInfo
from lora_tasks.scheduling.duration import Prediction
from lora_tasks.settings import PlatformSettings
from lora_tasks.spec.schema import JobSpec


def predict_training(info: RunInfo, spec: JobSpec, images: int, run_id: str,
                     settings: PlatformSettings) -> Prediction:
    """Predict the train stage's duration from its workload and the ledger's history; record it."""
    from lora_tasks.scheduling.duration import DurationModel, Workload
    from lora_tasks.scheduling.memory import forward_flops
    from lora_tasks.scheduling.recommend import model_shapes

    training = spec.training
    batch = training.batch_size if training.batch_size != "auto" else 1
    steps = training.max_steps or training.epochs * math.ceil(images / (batch * training.gradient_accumulation_steps))
    flops = forward_flops(model_shapes(spec), training.resolution, spec.model.lora_rank,
                          tuple(spec.model.target_modules))
    work = Workload.of(flops, batch, training.gradient_accumulation_steps, steps, images, training.resolution)
    ledger = open_ledger(settings.ledger_url)
    history = [(Workload.from_features(r.features), r.actual_seconds)  # runs whose training succeeded
               for r in ledger.runs(gpu_type=info.gpu_type) if r.actual_seconds and "flops" in r.features]
    gpu_types = load_gpu_types(settings.gpu_types_file)
    prediction = DurationModel({info.gpu_type: gpu_types[info.gpu_type]}, {info.gpu_type: history}).predict(
        info.gpu_type, work)
    ledger.record_prediction(run_id, seconds=prediction.seconds, low=prediction.low, high=prediction.high,
                             peak_bytes=None, features={"flops": work.flops, "images": images, "steps": steps,
                                                        "resolution": training.resolution})
    return prediction
