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
    if spec.job.task == "text":  # a sample is a row of tokens; there are no pixels to decode
        from lora_tasks.scheduling.text_memory import model_config, profile_causal_lm, text_shape
        from lora_tasks.spec.base_model import locate_base_model

        config = model_config(locate_base_model(spec).location)
        shape = text_shape(spec, config, batch, "no", False)
        flops = profile_causal_lm(config, shape.tokens, shape.rank, shape.target_modules).forward_flops
        resolution = 0
    else:
        flops = forward_flops(model_shapes(spec), training.resolution, spec.model.lora_rank,
                              tuple(spec.model.target_modules))
        resolution = training.resolution
    work = Workload.of(flops, batch, training.gradient_accumulation_steps, steps, images, resolution)
    ledger = open_ledger(settings.ledger_url)
    history = [(Workload.from_features(r.features), r.actual_seconds)  # runs whose training succeeded
               for r in ledger.runs(gpu_type=info.gpu_type) if r.actual_seconds and "flops" in r.features]
    gpu_types = load_gpu_types(settings.gpu_types_file)
    prediction = DurationModel({info.gpu_type: gpu_types[info.gpu_type]}, {info.gpu_type: history}).predict(
        info.gpu_type, work)
    ledger.record_prediction(run_id, seconds=prediction.seconds, low=prediction.low, high=prediction.high,
                             peak_bytes=None, features={"flops": work.flops, "images": images, "steps": steps,
                                                        "resolution": resolution})
    return prediction
