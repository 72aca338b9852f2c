"""LoraTrainer: one training loop for image and text LoRAs, resumable to the bit, exported for real tools.

The run, in order: list the dataset (fail fast, before any model loads), load the frozen
model and attach the LoRA, ready the data, restore the newest checkpoint if any, train with
periodic atomic checkpoints, measure the adapter against the base model, and export it. The
output folder is owned by one run at a time (a file lock), and rerunning a finished job
returns its adapter instead of training again. What differs between a diffusion UNet and a
causal language model lives in a :class:`~lora_tasks.train.model_task.ModelTask`
(:mod:`.image_task`, :mod:`.text_task`); this module is what they share.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from lora_tasks.errors import DatasetError, LoraTaskError, ProblemCollector, ResumeError
from lora_tasks.spec.base_model import base_model_sha256, check_spec_against_model
from lora_tasks.spec.schema import JobSpec
from lora_tasks.train import checkpoint as ckpt
from lora_tasks.train.export import export_adapter, file_digests, sweep_interrupted_exports
from lora_tasks.train.image_task import ImageTask
from lora_tasks.train.metrics import MetricsLog, peak_memory_bytes, read_metrics
from lora_tasks.train.model_task import ModelTask, RunRecord
from lora_tasks.train.order import BatchStream, batches_per_epoch, samples_per_bucket
from lora_tasks.train.outputs import ADAPTER_DIR, CHECKPOINT_DIR, METRICS_FILE, SUMMARY_FILE
from lora_tasks.train.settings import RunSettings, resolve_settings
from lora_tasks.train.summary import lora_size, record_figures
from lora_tasks.train.text_task import TextTask

log = logging.getLogger(__name__)

TASKS: dict[str, type[ImageTask] | type[TextTask]] = {"image": ImageTask, "text": TextTask}
RESUME_IRRELEVANT = {"save_steps", "checkpoints_total_limit", "latent_cache", "compare_at_end", "sample_every_n_steps",
                     "sample_prompts", "allow_upscale"}
"""Training keys that do not change the result, so a resume may differ in them."""
EVAL_RELEVANT = {"holdout_fraction", "holdout_min"}
"""The eval keys that change what trains (a text job holds records out itself); the others only measure."""


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path
    metrics_path: Path
    summary: dict[str, Any]


class LoraTrainer:
    """Trains one job spec on one dataset folder into one output folder."""

    def __init__(self, spec: JobSpec, dataset_dir: Path | None = None, output_dir: Path | None = None,
                 device: str | None = None) -> None:
        found = ProblemCollector(spec.source)
        fitted = found.check("model_config.base_model", lambda: check_spec_against_model(spec))
        self.dataset_dir = found.check("dataset.uri", lambda: _dataset_path(dataset_dir or spec.dataset.uri))
        found.raise_found()
        assert fitted is not None and self.dataset_dir is not None  # raise_found raised otherwise
        self.spec, self.ref, self.warnings = fitted
        self.cfg = self.spec.training
        self.output_dir = Path(output_dir) if output_dir else self.spec.output_dir()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.settings: RunSettings = resolve_settings(self.spec, self.device)
        self.checkpoint_dir = self.output_dir / CHECKPOINT_DIR
        self.metrics_path = self.output_dir / METRICS_FILE
        self.task: ModelTask = TASKS[self.spec.job.task](self.spec, self.ref, self.dataset_dir, self.output_dir,
                                                          self.device, self.settings)

    # ------------------------------------------------------------------ the whole run

    def train(self, resume: str = "auto") -> TrainResult:
        """Train (or finish an interrupted run) and export; ``resume`` is 'auto', 'none' or a path."""
        with _exclusive(self.output_dir):
            sweep_interrupted_exports(self.output_dir)
            self._collect()
            finished = self._finished()
            if finished:
                log.info("this job already finished in %s; returning its adapter", finished.adapter_dir)
                return finished
            started = datetime.now(UTC)
            self.prepare()
            start = self.restore(resume)
            self.metrics = MetricsLog(self.metrics_path, start)
            try:
                self.loop(start, self.total_steps)
            finally:
                self.metrics.close()
            return self.export(started)

    def _collect(self) -> None:
        self.task.collect()
        self.fingerprint = self._fingerprint()
        self.collected = True

    def prepare(self) -> None:
        """Load the model, attach the LoRA, ready the data, build optimizer and schedule."""
        from diffusers.optimization import get_scheduler

        if not getattr(self, "collected", False):
            self._collect()
        torch.manual_seed(self.cfg.seed)
        self.task.prepare()
        for warning in self.task.warnings:
            self._warn(warning)
        self.target_modules = self.task.target_modules
        self.params = {name: p for name, p in self.task.module.named_parameters() if p.requires_grad}
        self.lora_size = lora_size(self.task.module, self.params)
        log.info("LoRA on %s: %s trainable parameters, %.4f%% of the model's %s", ", ".join(self.target_modules),
                 f"{self.lora_size['parameters']:,}", 100 * self.lora_size["share"],
                 f"{self.lora_size['model_parameters']:,}")
        self.optimizer = torch.optim.AdamW(
            list(self.params.values()), lr=self.cfg.learning_rate, betas=(self.cfg.adam_beta1, self.cfg.adam_beta2),
            weight_decay=self.cfg.adam_weight_decay, eps=self.cfg.adam_epsilon, fused=True,
        )
        buckets, repeats = self.task.buckets, self.task.repeats
        self._fit_batch_size(samples_per_bucket(buckets, repeats))
        per_epoch = math.ceil(batches_per_epoch(buckets, repeats, self.settings.batch_size)
                              / self.cfg.gradient_accumulation_steps)
        self.total_steps = self.cfg.max_steps or self.cfg.epochs * per_epoch
        self.steps_per_epoch = per_epoch
        self.lr_scheduler = get_scheduler(self.cfg.lr_scheduler, self.optimizer,
                                          num_warmup_steps=self.cfg.lr_warmup_steps,
                                          num_training_steps=self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.settings.precision == "fp16")
        self.generator = torch.Generator(self.device).manual_seed(self.cfg.seed)  # noise is drawn where it is used
        self.stream = BatchStream(buckets, repeats, self.settings.batch_size, self.cfg.seed)

    def _fit_batch_size(self, per_bucket: dict[Any, int]) -> None:
        """A batch never mixes buckets, so none holds more than its bucket's samples an epoch: a batch size over
        the largest bucket is clamped to it, and buckets smaller than the batch size are named, with warnings,
        so that what the run reports is what it trained."""
        requested, largest = self.settings.batch_size, max(per_bucket.values())
        smaller = sorted((n, bucket) for bucket, n in per_bucket.items() if n < min(requested, largest))
        if smaller:
            named = ", ".join(f"{w}x{h}: {n}" for n, (w, h) in smaller[:5]) + (" ..." if len(smaller) > 5 else "")
            self._warn(f"{len(smaller)} of {len(per_bucket)} buckets hold fewer samples an epoch than a batch "
                       f"({named}), so their batches are smaller: metrics.jsonl and the summary count the samples "
                       "really trained (samples_trained, mean_batch_size)")
        if requested <= largest:
            return
        warning = (f"training_config.batch_size {requested} is more than the {largest} samples of the largest "
                   f"bucket (a batch never mixes buckets), so batches hold at most {largest}: training with "
                   f"batch_size {largest}. Fix: set batch_size to {largest} or less, or add images")
        self._warn(warning)
        self.settings = self.task.settings = replace(self.settings, batch_size=largest)

    def _warn(self, warning: str) -> None:
        log.warning(warning)
        self.warnings.append(warning)

    # ------------------------------------------------------------------------ resume

    def restore(self, resume: str) -> int:
        """Load the requested checkpoint into the live objects; returns the step it was taken at."""
        if resume == "none":
            return 0
        path = ckpt.latest_checkpoint(self.checkpoint_dir) if resume == "auto" else Path(resume)
        if path is None:
            return 0
        if not ckpt.CHECKPOINT_NAME.match(path.name) or not path.is_dir():
            raise ResumeError(f"{path} is not a checkpoint folder (step-NNNNNNNN). Fix: use --resume auto")
        state = ckpt.load_checkpoint(path)
        if state.fingerprint != self.fingerprint:
            raise ResumeError(
                f"checkpoint {path} was made with a different job spec or dataset, so resuming would not "
                "continue the same run. Fix: restore the original spec and data, use another output folder, "
                "or pass --resume none to start over"
            )
        if set(state.trainable) != set(self.params):
            raise ResumeError(f"checkpoint {path} holds different LoRA layers. Fix: pass --resume none")
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(state.trainable[name])
        self.optimizer.load_state_dict(state.optimizer)
        self.lr_scheduler.load_state_dict(state.lr_scheduler)
        if self.scaler.is_enabled():
            self.scaler.load_state_dict(state.scaler)
        self.stream = BatchStream(self.task.buckets, self.task.repeats, self.settings.batch_size, self.cfg.seed,
                                  **state.stream)
        ckpt.restore_rng(self.generator, state.rng, state.host_rng)
        log.info("resumed from %s (step %d of %d)", path, state.step, self.total_steps)
        return state.step

    def save(self, step: int) -> Path:
        rng, host_rng = ckpt.capture_rng(self.generator)
        return ckpt.save_checkpoint(self.checkpoint_dir, ckpt.Checkpoint(
            step=step,
            trainable={name: p.detach() for name, p in self.params.items()},
            optimizer=self.optimizer.state_dict(),
            lr_scheduler=self.lr_scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            stream=self.stream.state(),
            rng=rng,
            host_rng=host_rng,
            fingerprint=self.fingerprint,
        ), keep=self.cfg.checkpoints_total_limit)

    # -------------------------------------------------------------------------- train

    def loop(self, start: int, stop: int) -> list[float]:
        """Optimizer steps ``start+1 .. stop``; returns each step's wall time, overheads included.

        The loss stays on the device and is read (one host sync) only when a metrics record is
        written: every ``logging_steps``, at each checkpoint and at the last step. A record holds
        the mean over the steps since the previous one, so a resumed run writes what an
        uninterrupted one would.
        """
        durations: list[float] = []
        every = self.cfg.sample_every_n_steps
        progress = tqdm(total=stop, initial=start, desc="training", unit="step", mininterval=1.0)
        last = window_start = time.perf_counter()
        window: torch.Tensor | None = None  # the loss summed on the device since the last record
        steps = samples = 0
        for step in range(start + 1, stop + 1):
            step_loss, step_samples = self.train_step()
            window = step_loss if window is None else window + step_loss
            steps += 1
            samples += step_samples
            now = time.perf_counter()
            durations.append(now - last)  # includes the previous step's logging and checkpoint
            last = now
            checkpoint = step % self.cfg.save_steps == 0 or step == self.total_steps
            sampling = every is not None and (step % every == 0 or step == self.total_steps)
            if checkpoint or sampling or step % self.settings.logging_steps == 0 or step == stop:
                loss = window.item() / steps
                seconds = (time.perf_counter() - window_start) / steps
                record = {
                    "step": step, "epoch": self.stream.epoch, "loss": loss, "lr": self.lr_scheduler.get_last_lr()[0],
                    "steps": steps, "samples_trained": samples, "step_seconds": seconds,
                    "samples_per_s": samples / (seconds * steps),
                }
                if sampling:
                    record |= self._sample(step)
                    last = time.perf_counter()  # sampling is timed apart, not as the next step's time
                record["peak_memory_bytes"] = peak_memory_bytes(self.device)  # the samples' peak included
                self.metrics.write(record)
                progress.set_postfix(loss=f"{loss:.4f}", refresh=False)
                window, steps, samples, window_start = None, 0, 0, time.perf_counter()
            if checkpoint:
                self.metrics.flush()
                self.save(step)
            progress.update(1)
        progress.close()
        return durations

    def _sample(self, step: int) -> dict[str, Any]:
        """The training samples at ``step``, made so that training goes on as if they had not been: eval mode
        (no dropout), no gradients, and the global RNG forked (the batch noise has its own generator)."""
        began = time.perf_counter()
        self.task.module.eval()
        try:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), \
                    torch.no_grad(), self._autocast():
                images = self.task.sample(step)
        finally:
            self.task.module.train()
        return {"sample_images": images, "sample_seconds": round(time.perf_counter() - began, 3)}

    def train_step(self) -> tuple[torch.Tensor, int]:
        """One optimizer step over ``gradient_accumulation_steps`` micro-batches; returns the mean loss,
        on the device (reading it would make the host wait for the GPU every step), and the samples trained."""
        accumulation = self.cfg.gradient_accumulation_steps
        total: torch.Tensor | None = None
        samples = 0
        for _ in range(accumulation):
            indices = self.stream.next()
            samples += len(indices)
            with self._autocast():
                loss = self.task.loss(indices, self.generator)
            self.scaler.scale(loss / accumulation).backward()
            total = loss.detach().float() if total is None else total + loss.detach().float()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params.values(), self.cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / accumulation, samples

    def _autocast(self) -> Any:
        if self.settings.precision == "no":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.settings.weight_dtype)

    # ------------------------------------------------------------------------- export

    def export(self, started: datetime) -> TrainResult:
        """Compare with the base model (unless the job's evaluate stage does), then write the adapter and its
        summary."""
        self.task.module.eval()
        comparison = self._compare() if self.cfg.compare_at_end else None
        record = RunRecord(steps=self.total_steps, epochs=self.stream.epoch + 1, started_at=started,
                           finished_at=datetime.now(UTC), base_model_sha256=base_model_sha256(self.ref))
        summary = self._summary(record, read_metrics(self.metrics_path), comparison)

        def describe(folder: Path) -> dict[str, str]:
            summary["files"] = file_digests(folder)
            return {
                SUMMARY_FILE: json.dumps(summary, indent=2, sort_keys=True),
                "job.yaml": yaml.safe_dump(self.spec.to_yaml_dict(), sort_keys=False),
            }

        adapter = export_adapter(self.output_dir, lambda folder: self.task.write_weights(folder, record), describe)
        return TrainResult(adapter, self.metrics_path, summary)

    def _compare(self) -> dict[str, Any]:
        """The adapter against the base model on the first ``eval.max_compare_items`` training units, timed:
        on a large model this is minutes, so its size is a setting and its cost is reported."""
        items = self.spec.eval.max_compare_items
        began = time.perf_counter()
        with self._autocast():
            base, lora = self.task.effect(self.cfg.seed, items)
        seconds = time.perf_counter() - began
        used = min(items, len(self.task.buckets))
        log.info("adapter against the base model on %d training units (eval.max_compare_items %d): %.1f s",
                 used, items, seconds)
        return {"base": base, "lora": lora, "items": used, "seconds": round(seconds, 3)}

    def _summary(self, record: RunRecord, records: list[dict[str, Any]],
                 comparison: dict[str, Any] | None) -> dict[str, Any]:
        figures = record_figures(records, self.cfg.gradient_accumulation_steps)
        return {
            "job": {"name": self.spec.job.name, "tenant": self.spec.job.tenant, "task": self.spec.job.task},
            "fingerprint": self.fingerprint,
            "base_model": {"kind": self.ref.kind, "location": self.ref.location, "sha256": record.base_model_sha256},
            "lora": {"rank": self.spec.model.lora_rank, "alpha": self.spec.model.alpha,
                     "method": self.spec.model.method, "target_modules": self.target_modules, **self.lora_size},
            "settings": {"device": self.device.type, "precision": self.settings.precision,
                         "batch_size": self.settings.batch_size, "mean_batch_size": figures.pop("mean_batch_size"),
                         "gradient_checkpointing": self.settings.gradient_checkpointing},
            "steps": self.total_steps,
            "epochs": record.epochs,
            **self.task.facts(),
            **({self.task.effect_name: comparison} if comparison else {}),
            **figures,
            "started_at": record.started_at.isoformat(timespec="seconds"),
            "finished_at": record.finished_at.isoformat(timespec="seconds"),
            "warnings": self.warnings,
        }

    # -------------------------------------------------------------------- bookkeeping

    def _fingerprint(self) -> str:
        """Identifies 'the same run': spec, base model and data, minus settings that don't change results."""
        spec = self.spec.to_yaml_dict()
        spec["training_config"] = {k: v for k, v in spec["training_config"].items() if k not in RESUME_IRRELEVANT}
        spec["eval"] = {k: v for k, v in spec["eval"].items() if k in EVAL_RELEVANT}
        spec.pop("output")
        fields = [spec, self.ref.kind, self.ref.location, self.task.data_fingerprint()]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def _finished(self) -> TrainResult | None:
        summary_path = self.output_dir / ADAPTER_DIR / SUMMARY_FILE
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            return None
        if summary.get("fingerprint") != self.fingerprint:
            return None
        return TrainResult(summary_path.parent, self.metrics_path, summary)


@contextmanager
def _exclusive(output_dir: Path) -> Iterator[None]:
    """One run per output folder: a second one fails at once instead of corrupting the first."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LoraTaskError(f"another training run is writing to {output_dir}. Fix: wait for it to finish "
                                "or choose another output folder") from None
        yield


def _dataset_path(given: str | Path | None) -> Path:
    """The dataset as a local path, which must exist (what it holds is checked when it is listed)."""
    if not given:
        raise DatasetError("no dataset given. Fix: set dataset.uri in the job spec or pass --dataset DIR")
    path = Path(str(given).removeprefix("file://")).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset {path} does not exist. Fix: set dataset.uri or --dataset to a folder of "
                           "images (a text job: a text file or folder)")
    return path
