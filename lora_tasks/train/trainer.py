"""LoraTrainer: a LoRA on a Stable Diffusion UNet, resumable to the bit, exported for real tools.

The run, in order: list the dataset (fail fast, before any model loads), load the frozen
models and attach the LoRA, cache latents and caption embeddings, restore the newest
checkpoint if any, train with periodic atomic checkpoints, measure the adapter against the
base model, and export it. The output folder is owned by one run at a time (a file lock),
and rerunning a finished job returns its adapter instead of training again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from lora_tasks.errors import DatasetError, LoraTaskError, ResumeError
from lora_tasks.spec.base_model import base_model_sha256, check_spec_against_model
from lora_tasks.spec.schema import JobSpec
from lora_tasks.train import checkpoint as ckpt
from lora_tasks.train.buckets import Size, training_buckets
from lora_tasks.train.cache import Encoder, SampleSource, build_source
from lora_tasks.train.data import (
    collect_images,
    dataset_fingerprint,
    tag_frequency,
)
from lora_tasks.train.export import export_adapter, file_digests
from lora_tasks.train.loss import adapter_effect, denoising_loss
from lora_tasks.train.metadata import TrainingFacts, base_model_version, kohya_metadata
from lora_tasks.train.metrics import MetricsLog, peak_memory_bytes, read_metrics
from lora_tasks.train.models import add_lora, load_models, trainable_parameters
from lora_tasks.train.order import BatchStream, batches_per_epoch
from lora_tasks.train.outputs import ADAPTER_DIR, CACHE_DIR, CHECKPOINT_DIR, METRICS_FILE, SUMMARY_FILE
from lora_tasks.train.settings import RunSettings, resolve_settings

log = logging.getLogger(__name__)

EVAL_ITEMS = 16
"""Images used to compare the adapter with the base model at the end of a run."""
RESUME_IRRELEVANT = {"save_steps", "checkpoints_total_limit", "latent_cache"}
"""Training keys that do not change the result, so a resume may differ in them."""


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path
    metrics_path: Path
    summary: dict[str, Any]


class LoraTrainer:
    """Trains one job spec on one dataset folder into one output folder."""

    def __init__(self, spec: JobSpec, dataset_dir: Path | None = None, output_dir: Path | None = None,
                 device: str | None = None) -> None:
        if spec.job.task != "image":
            raise LoraTaskError(f"job.task is {spec.job.task!r}, but this trainer trains image LoRAs only. Fix: "
                                "set job.task: image (text datasets can be scanned and filtered, not trained yet)")
        self.spec, self.ref, self.warnings = check_spec_against_model(spec)
        self.cfg = self.spec.training
        dataset = dataset_dir or self.spec.dataset.uri
        if not dataset:
            raise DatasetError("no dataset given. Fix: set dataset.uri in the job spec or pass --dataset DIR")
        self.dataset_dir = Path(str(dataset).removeprefix("file://")).expanduser()
        self.output_dir = Path(output_dir) if output_dir else self.spec.output_dir()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.settings: RunSettings = resolve_settings(self.spec, self.device)
        self.checkpoint_dir = self.output_dir / CHECKPOINT_DIR
        self.metrics_path = self.output_dir / METRICS_FILE

    # ------------------------------------------------------------------ the whole run

    def train(self, resume: str = "auto") -> TrainResult:
        """Train (or finish an interrupted run) and export; ``resume`` is 'auto', 'none' or a path."""
        with _exclusive(self.output_dir):
            self.items = collect_images(self.dataset_dir, self.spec.dataset)
            self.fingerprint = self._fingerprint()
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

    def prepare(self) -> None:
        """Load models, attach the LoRA, bucket and cache the data, build optimizer and schedule."""
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import cast_training_params

        if not hasattr(self, "items"):
            self.items = collect_images(self.dataset_dir, self.spec.dataset)
            self.fingerprint = self._fingerprint()
        torch.manual_seed(self.cfg.seed)
        self.models = load_models(self.ref)
        self._place_models()
        self.target_modules = add_lora(self.models.unet, self.spec.model)
        cast_training_params(self.models.unet, torch.float32)
        if self.settings.gradient_checkpointing:
            self.models.unet.enable_gradient_checkpointing()
        self.models.unet.train()
        self.buckets = self._buckets()
        encoder = Encoder(self.models, self.device)
        self.source: SampleSource = build_source(self.cfg.latent_cache, encoder, self.items, self.buckets,
                                                 self.output_dir / CACHE_DIR, self.ref.location)
        self.empty_embedding = encoder.captions([""])[0]
        if self.cfg.latent_cache != "off":  # the frozen encoders are no longer needed on the GPU
            self.models.vae.to("cpu")
            self.models.text_encoder.to("cpu")
        self.params = trainable_parameters(self.models.unet)
        self.optimizer = torch.optim.AdamW(
            list(self.params.values()), lr=self.cfg.learning_rate, betas=(self.cfg.adam_beta1, self.cfg.adam_beta2),
            weight_decay=self.cfg.adam_weight_decay, eps=self.cfg.adam_epsilon, fused=True,
        )
        repeats = [item.repeats for item in self.items]
        per_epoch = math.ceil(batches_per_epoch(self.buckets, repeats, self.settings.batch_size)
                              / self.cfg.gradient_accumulation_steps)
        self.total_steps = self.cfg.max_steps or self.cfg.epochs * per_epoch
        self.steps_per_epoch = per_epoch
        self.lr_scheduler = get_scheduler(self.cfg.lr_scheduler, self.optimizer,
                                          num_warmup_steps=self.cfg.lr_warmup_steps,
                                          num_training_steps=self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.settings.precision == "fp16")
        self.generator = torch.Generator(self.device).manual_seed(self.cfg.seed)  # noise is drawn where it is used
        self.stream = BatchStream(self.buckets, repeats, self.settings.batch_size, self.cfg.seed)

    def _place_models(self) -> None:
        dtype = self.settings.weight_dtype
        for part in (self.models.unet, self.models.text_encoder):
            part.to(self.device) if dtype == torch.float32 else part.to(self.device, dtype=dtype)
        self.models.vae.to(self.device)

    def _buckets(self) -> list[Size]:
        return training_buckets([item.size for item in self.items], self.cfg, self.models.size_divisor)

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
        self.stream = BatchStream(self.buckets, self.stream.repeats, self.settings.batch_size, self.cfg.seed,
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
        progress = tqdm(total=stop, initial=start, desc="training", unit="step", mininterval=1.0)
        last = window_start = time.perf_counter()
        window: torch.Tensor | None = None  # the loss summed on the device since the last record
        steps = 0
        for step in range(start + 1, stop + 1):
            step_loss = self.train_step()
            window = step_loss if window is None else window + step_loss
            steps += 1
            now = time.perf_counter()
            durations.append(now - last)  # includes the previous step's logging and checkpoint
            last = now
            checkpoint = step % self.cfg.save_steps == 0 or step == self.total_steps
            if checkpoint or step % self.settings.logging_steps == 0 or step == stop:
                loss = window.item() / steps
                seconds = (time.perf_counter() - window_start) / steps
                self.metrics.write({
                    "step": step, "epoch": self.stream.epoch, "loss": loss, "lr": self.lr_scheduler.get_last_lr()[0],
                    "steps": steps, "step_seconds": seconds,
                    "samples_per_s": self.settings.batch_size * self.cfg.gradient_accumulation_steps / seconds,
                    "peak_memory_bytes": peak_memory_bytes(self.device),
                })
                progress.set_postfix(loss=f"{loss:.4f}", refresh=False)
                window, steps, window_start = None, 0, time.perf_counter()
            if checkpoint:
                self.metrics.flush()
                self.save(step)
            progress.update(1)
        progress.close()
        return durations

    def train_step(self) -> torch.Tensor:
        """One optimizer step over ``gradient_accumulation_steps`` micro-batches; returns the mean loss,
        on the device (reading it would make the host wait for the GPU every step)."""
        accumulation = self.cfg.gradient_accumulation_steps
        total: torch.Tensor | None = None
        for _ in range(accumulation):
            latents, embeddings = self._micro_batch()
            noise = torch.randn(latents.shape, generator=self.generator, device=self.device)
            timesteps = torch.randint(0, self.models.noise_scheduler.config.num_train_timesteps,
                                      (latents.shape[0],), generator=self.generator, device=self.device)
            with self._autocast():
                loss = denoising_loss(self.models.unet, self.models.noise_scheduler, latents, embeddings, noise,
                                      timesteps)
            self.scaler.scale(loss / accumulation).backward()
            total = loss.detach().float() if total is None else total + loss.detach().float()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params.values(), self.cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / accumulation

    def _micro_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        latents, embeddings = self.source.batch(self.stream.next())
        latents, embeddings = latents.to(self.device), embeddings.to(self.device)
        dropout = self.spec.dataset.caption_dropout
        if dropout > 0:
            dropped = torch.rand(latents.shape[0], generator=self.generator, device=self.device) < dropout
            embeddings = torch.where(dropped[:, None, None], self.empty_embedding.to(self.device), embeddings)
        return latents, embeddings

    def _autocast(self) -> Any:
        if self.settings.precision == "no":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.settings.weight_dtype)

    # ------------------------------------------------------------------------- export

    def export(self, started: datetime) -> TrainResult:
        """Compare with the base model, then write the adapter, its metadata and summary."""
        unet = self.models.unet
        unet.eval()
        base_loss, lora_loss = self._adapter_effect()
        facts = self._facts(started)
        metadata = kohya_metadata(self.spec, self.settings, facts)
        records = read_metrics(self.metrics_path)
        summary = self._summary(facts, records, base_loss, lora_loss)

        def describe(folder: Path) -> dict[str, str]:
            summary["files"] = file_digests(folder)
            return {
                SUMMARY_FILE: json.dumps(summary, indent=2, sort_keys=True),
                "job.yaml": yaml.safe_dump(self.spec.to_yaml_dict(), sort_keys=False),
            }

        adapter = export_adapter(unet, self.output_dir, self.spec.job.name, self.spec.output.formats,
                                 self.spec.model.alpha, metadata, describe)
        return TrainResult(adapter, self.metrics_path, summary)

    def _adapter_effect(self) -> tuple[float, float]:
        """Fixed-noise denoising loss on training images without and with the adapter."""
        batches = [tuple(t.to(self.device) for t in self.source.batch([i]))
                   for i in range(min(EVAL_ITEMS, len(self.items)))]
        with self._autocast():
            return adapter_effect(self.models.unet, self.models.noise_scheduler, batches, self.cfg.seed)

    def _facts(self, started: datetime) -> TrainingFacts:
        dirs: dict[str, dict[str, int]] = {}
        for item in self.items:
            entry = dirs.setdefault(item.folder or ".", {"n_repeats": item.repeats, "img_count": 0})
            entry["img_count"] += 1
        return TrainingFacts(
            base_model_name=Path(self.ref.location).name if self.ref.kind != "hub" else self.ref.location,
            base_model_sha256=base_model_sha256(self.ref),
            base_model_version=base_model_version(self.models.unet.config),
            steps=self.total_steps,
            epochs=self.stream.epoch + 1,
            image_count=len(self.items),
            dataset_dirs=dirs,
            tag_frequency=tag_frequency(self.items),
            bucket_counts=Counter(self.buckets),
            started_at=started,
            finished_at=datetime.now(UTC),
        )

    def _summary(self, facts: TrainingFacts, records: list[dict[str, Any]], base_loss: float,
                 lora_loss: float) -> dict[str, Any]:
        tenth = max(1, len(records) // 10)
        losses = [r["loss"] for r in records]
        seconds = sorted(r["step_seconds"] for r in records)
        return {
            "job": {"name": self.spec.job.name, "tenant": self.spec.job.tenant},
            "fingerprint": self.fingerprint,
            "base_model": {"kind": self.ref.kind, "location": self.ref.location, "sha256": facts.base_model_sha256},
            "lora": {"rank": self.spec.model.lora_rank, "alpha": self.spec.model.alpha,
                     "method": self.spec.model.method, "target_modules": self.target_modules},
            "settings": {"device": self.device.type, "precision": self.settings.precision,
                         "batch_size": self.settings.batch_size,
                         "gradient_checkpointing": self.settings.gradient_checkpointing},
            "steps": self.total_steps,
            "epochs": facts.epochs,
            "images": facts.image_count,
            "buckets": {f"{w}x{h}": n for (w, h), n in sorted(facts.bucket_counts.items())},
            "train_loss": {"first": _mean(losses[:tenth]), "last": _mean(losses[-tenth:])},
            "fixed_noise_loss": {"base": base_loss, "lora": lora_loss},
            "median_step_seconds": seconds[len(seconds) // 2] if seconds else None,
            "peak_memory_bytes": max((r["peak_memory_bytes"] for r in records), default=0),
            "started_at": facts.started_at.isoformat(timespec="seconds"),
            "finished_at": facts.finished_at.isoformat(timespec="seconds"),
            "warnings": self.warnings,
        }

    # -------------------------------------------------------------------- bookkeeping

    def _fingerprint(self) -> str:
        """Identifies 'the same run': spec, base model and data, minus settings that don't change results."""
        spec = self.spec.to_yaml_dict()
        spec["training_config"] = {k: v for k, v in spec["training_config"].items() if k not in RESUME_IRRELEVANT}
        spec.pop("output")
        fields = [spec, self.ref.kind, self.ref.location, dataset_fingerprint(self.items)]
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


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None

