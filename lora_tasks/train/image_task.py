"""An image job's part of training: images and captions in, a LoRA on a Stable Diffusion UNet trained on the
denoising loss, written for diffusers, kohya-ss tools (A1111, ComfyUI) and peft.

Latents and caption embeddings are cached once (the VAE and text encoder are frozen); each micro-batch
draws its caption dropout, noise and timesteps from the run's generator, in that order, so a resumed run
draws what an uninterrupted one would.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch

from lora_tasks.spec.base_model import BaseModelRef
from lora_tasks.spec.schema import JobSpec
from lora_tasks.train.buckets import Size, training_buckets, upscaled_images
from lora_tasks.train.cache import Encoder, SampleSource, build_source
from lora_tasks.train.data import collect_images, dataset_fingerprint, tag_frequency
from lora_tasks.train.export import write_image_formats
from lora_tasks.train.loss import adapter_effect, denoising_loss
from lora_tasks.train.metadata import TrainingFacts, base_model_version, kohya_metadata
from lora_tasks.train.metrics import read_metrics
from lora_tasks.train.model_task import RunRecord
from lora_tasks.train.models import add_lora, load_models
from lora_tasks.train.outputs import CACHE_DIR, METRICS_FILE, PROGRESS_FILE, TRAINING_SAMPLES_DIR
from lora_tasks.train.sample_grid import progress_grid
from lora_tasks.train.samples import SamplePrompt, generate, sampling_pipeline, training_sample_prompts
from lora_tasks.train.settings import RunSettings


class ImageTask:
    """A diffusion LoRA: the UNet is what trains; the VAE and text encoder only encode the data once."""

    effect_name = "fixed_noise_loss"

    def __init__(self, spec: JobSpec, ref: BaseModelRef, dataset_dir: Path, output_dir: Path,
                 device: torch.device, settings: RunSettings) -> None:
        self.spec, self.ref, self.dataset_dir, self.output_dir = spec, ref, dataset_dir, output_dir
        self.device, self.settings = device, settings
        self.warnings: list[str] = []
        self.sample_prompts: list[SamplePrompt] = []
        self.pipe: Any = None
        """The sampling pipeline over the training UNet, made at the first sample."""

    def collect(self) -> None:
        """List the images; with a diffusers folder (whose configs give the size granularity without loading a
        weight), images the spec forbids upscaling are refused here, before any model loads."""
        self.items = collect_images(self.dataset_dir, self.spec.dataset)
        self.repeats = [item.repeats for item in self.items]
        if self.ref.kind == "diffusers" and not self.spec.training.allow_upscale:
            from lora_tasks.scheduling.memory import ModelShapes

            self._check_upscaling(ModelShapes.from_folder(Path(self.ref.location)).size_divisor)

    def _check_upscaling(self, divisor: int) -> list[Size]:
        """The images' buckets, after refusing (or warning about) those smaller than their bucket."""
        sizes = [item.size for item in self.items]
        buckets = training_buckets(sizes, self.spec.training, divisor)
        upscaled = upscaled_images([item.relpath for item in self.items], sizes, buckets,
                                   self.spec.training.allow_upscale)
        if upscaled:
            self.warnings.append(upscaled)
        return buckets

    def data_fingerprint(self) -> str:
        return dataset_fingerprint(self.items)

    def prepare(self) -> None:
        from diffusers.training_utils import cast_training_params

        self.models = load_models(self.ref)
        dtype = self.settings.weight_dtype
        for part in (self.models.unet, self.models.text_encoder):
            part.to(self.device) if dtype == torch.float32 else part.to(self.device, dtype=dtype)
        self.models.vae.to(self.device)
        self.module = self.models.unet
        self.target_modules = add_lora(self.module, self.spec.model)
        cast_training_params(self.module, torch.float32)
        if self.settings.gradient_checkpointing:
            self.module.enable_gradient_checkpointing()
        self.module.train()
        self.buckets = self._check_upscaling(self.models.size_divisor)
        self.sample_prompts = self._sample_prompts()
        encoder = Encoder(self.models, self.device)
        self.source: SampleSource = build_source(self.spec.training.latent_cache, encoder, self.items, self.buckets,
                                                 self.output_dir / CACHE_DIR, self.ref.location)
        self.empty_embedding = encoder.captions([""])[0]
        if self.spec.training.latent_cache != "off":  # the frozen encoders are no longer needed on the GPU
            self.models.vae.to("cpu")
            self.models.text_encoder.to("cpu")

    def _sample_prompts(self) -> list[SamplePrompt]:
        training = self.spec.training
        if not training.sample_every_n_steps:
            return []
        prompts = training_sample_prompts([item.caption for item in self.items], training.sample_prompts,
                                          self.spec.eval, self.spec.dataset.trigger_word)
        if not prompts:
            self.warnings.append("training_config.sample_every_n_steps: there is nothing to sample (the captions are "
                                 "empty and no trigger word is set), so no samples are made. Fix: set "
                                 "training_config.sample_prompts")
        return prompts

    def sample(self, step: int) -> list[str]:
        """Images of the sample prompts from the LoRA as it is at ``step``, into the output folder's samples/;
        their paths there. The frozen encoders come back to the device for it when they were moved off."""
        if not self.sample_prompts:
            return []
        if self.pipe is None:
            self.pipe = sampling_pipeline(self.models)
        offloaded = self.spec.training.latent_cache != "off" and self.device.type != "cpu"
        if offloaded:
            self.models.vae.to(self.device)
            self.models.text_encoder.to(self.device)
        try:
            images = generate(self.pipe, self.sample_prompts, self.spec.eval,
                              self.spec.eval.sample_size or self.spec.training.resolution)
        finally:
            if offloaded:
                self.models.vae.to("cpu")
                self.models.text_encoder.to("cpu")
        folder = self.output_dir / TRAINING_SAMPLES_DIR
        folder.mkdir(parents=True, exist_ok=True)
        names = [f"{TRAINING_SAMPLES_DIR}/step-{step:08d}-{i:02d}.png" for i in range(len(images))]
        for name, image in zip(names, images, strict=True):
            image.save(self.output_dir / name)
        return names

    def micro_batch(self, indices: list[int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents and caption embeddings on the device, with ``dataset.caption_dropout`` applied."""
        latents, embeddings = self.source.batch(indices)
        latents, embeddings = latents.to(self.device), embeddings.to(self.device)
        dropout = self.spec.dataset.caption_dropout
        if dropout > 0:
            dropped = torch.rand(latents.shape[0], generator=generator, device=self.device) < dropout
            embeddings = torch.where(dropped[:, None, None], self.empty_embedding.to(self.device), embeddings)
        return latents, embeddings

    def loss(self, indices: list[int], generator: torch.Generator) -> torch.Tensor:
        latents, embeddings = self.micro_batch(indices, generator)
        noise = torch.randn(latents.shape, generator=generator, device=self.device)
        timesteps = torch.randint(0, self.models.noise_scheduler.config.num_train_timesteps,
                                  (latents.shape[0],), generator=generator, device=self.device)
        return denoising_loss(self.module, self.models.noise_scheduler, latents, embeddings, noise, timesteps)

    def effect(self, seed: int, items: int) -> tuple[float, float]:
        """Fixed-noise denoising loss on training images without and with the adapter."""
        batches = [tuple(t.to(self.device) for t in self.source.batch([i])) for i in range(min(items, len(self.items)))]
        return adapter_effect(self.module, self.models.noise_scheduler, batches, seed)

    def facts(self) -> dict[str, Any]:
        return {"images": len(self.items),
                "buckets": {f"{w}x{h}": n for (w, h), n in sorted(Counter(self.buckets).items())}}

    def write_weights(self, folder: Path, record: RunRecord) -> None:
        """The adapter in every format, and the training samples' grid beside it when there are samples."""
        metadata = kohya_metadata(self.spec, self.settings, self._training_facts(record))
        write_image_formats(self.module, folder, self.spec.job.name, self.spec.written_formats, self.spec.model.alpha,
                            metadata)
        if self.sample_prompts:
            grid = progress_grid(read_metrics(self.output_dir / METRICS_FILE), self.output_dir,
                                 [p.text for p in self.sample_prompts])
            if grid is not None:
                grid.save(folder / PROGRESS_FILE)

    def _training_facts(self, record: RunRecord) -> TrainingFacts:
        dirs: dict[str, dict[str, int]] = {}
        for item in self.items:
            entry = dirs.setdefault(item.folder or ".", {"n_repeats": item.repeats, "img_count": 0})
            entry["img_count"] += 1
        return TrainingFacts(
            base_model_name=Path(self.ref.location).name if self.ref.kind != "hub" else self.ref.location,
            base_model_sha256=record.base_model_sha256,
            base_model_version=base_model_version(self.module.config,
                                                  self.models.noise_scheduler.config.prediction_type),
            steps=record.steps,
            epochs=record.epochs,
            image_count=len(self.items),
            dataset_dirs=dirs,
            tag_frequency=tag_frequency(self.items),
            bucket_counts=Counter(self.buckets),
            started_at=record.started_at,
            finished_at=record.finished_at,
        )
