"""VAE latents and text embeddings, computed once instead of every step.

The VAE and text encoder are frozen, so re-encoding the same images and captions each step
(as diffusers' example script does) only burns time. ``SampleSource.batch`` hands the
training step ready-made latents and embeddings, from memory, from a disk cache that
survives a restart, or (``latent_cache: off``) encoded on the spot.

Latents are the mean of the VAE's posterior, so cached and uncached training match.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from lora_tasks.train.buckets import Size
from lora_tasks.train.data import TrainingImage, load_pixels
from lora_tasks.train.models import DiffusionModels

ENCODE_BATCH = 8


class SampleSource(Protocol):
    def batch(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents (B, C, h, w) and caption embeddings (B, tokens, dim) for these items."""
        ...


class Encoder:
    """Runs the frozen VAE and text encoder."""

    def __init__(self, models: DiffusionModels, device: torch.device) -> None:
        self.models = models
        self.device = device
        config = models.vae.config
        self.scale = config.scaling_factor
        self.shift = getattr(config, "shift_factor", None) or 0.0

    @torch.no_grad()
    def images(self, items: list[TrainingImage], bucket: Size) -> torch.Tensor:
        pixels = torch.stack([torch.from_numpy(load_pixels(item, bucket)) for item in items])
        vae = self.models.vae
        posterior = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist
        return ((posterior.mean - self.shift) * self.scale).float()

    @torch.no_grad()
    def captions(self, captions: list[str]) -> torch.Tensor:
        tokenizer = self.models.tokenizer
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        return self.models.text_encoder(ids.to(self.device))[0].float()


class LiveSource:
    """Encodes every batch anew: the slow path, kept for comparison and for tiny memory."""

    def __init__(self, encoder: Encoder, items: list[TrainingImage], buckets: list[Size]) -> None:
        self.encoder, self.items, self.buckets = encoder, items, buckets

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = [self.items[i] for i in indices]
        latents = self.encoder.images(chosen, self.buckets[indices[0]])
        return latents, self.encoder.captions([item.caption for item in chosen])


class MemorySource:
    """Every latent and each distinct caption's embedding, held on the training device."""

    def __init__(self, latents: list[torch.Tensor], caption_index: list[int], embeddings: torch.Tensor) -> None:
        self.latents, self.caption_index, self.embeddings = latents, caption_index, embeddings

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        latents = torch.stack([self.latents[i] for i in indices])
        return latents, self.embeddings[[self.caption_index[i] for i in indices]]


class DiskSource:
    """One safetensors file per image; survives restarts and keeps host memory flat."""

    def __init__(self, files: list[Path], device: torch.device) -> None:
        self.files, self.device = files, device

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        from safetensors.torch import load_file

        loaded = [load_file(self.files[i], device=str(self.device)) for i in indices]
        return torch.stack([x["latents"] for x in loaded]), torch.stack([x["text"] for x in loaded])


def build_source(mode: str, encoder: Encoder, items: list[TrainingImage], buckets: list[Size],
                 cache_dir: Path, model_identity: str) -> SampleSource:
    """The sample source for a ``latent_cache`` mode; encodes what is not cached yet."""
    if mode == "off":
        return LiveSource(encoder, items, buckets)
    if mode == "memory":
        latents = _encode_all(encoder, items, buckets)
        distinct = list(dict.fromkeys(item.caption for item in items))
        embeddings = torch.cat([encoder.captions(distinct[i:i + ENCODE_BATCH])
                                for i in range(0, len(distinct), ENCODE_BATCH)])
        return MemorySource(latents, [distinct.index(item.caption) for item in items], embeddings)
    return DiskSource(_fill_disk_cache(encoder, items, buckets, cache_dir, model_identity), encoder.device)


def _groups(buckets: list[Size], todo: list[int]) -> list[list[int]]:
    by_bucket: dict[Size, list[int]] = {}
    for i in todo:
        by_bucket.setdefault(buckets[i], []).append(i)
    return [group[j:j + ENCODE_BATCH] for group in by_bucket.values() for j in range(0, len(group), ENCODE_BATCH)]


def _encode_all(encoder: Encoder, items: list[TrainingImage], buckets: list[Size]) -> list[torch.Tensor]:
    latents: list[Any] = [None] * len(items)
    for group in tqdm(_groups(buckets, list(range(len(items)))), desc="caching latents", unit="batch"):
        for i, latent in zip(group, encoder.images([items[i] for i in group], buckets[group[0]]), strict=True):
            latents[i] = latent
    return latents


def _fill_disk_cache(encoder: Encoder, items: list[TrainingImage], buckets: list[Size], cache_dir: Path,
                     model_identity: str) -> list[Path]:
    from safetensors.torch import save_file

    cache_dir.mkdir(parents=True, exist_ok=True)
    files = [cache_dir / f"{_cache_key(item, bucket, model_identity)}.safetensors"
             for item, bucket in zip(items, buckets, strict=True)]
    todo = [i for i, f in enumerate(files) if not f.is_file()]
    for group in tqdm(_groups(buckets, todo), desc="caching latents to disk", unit="batch"):
        latents = encoder.images([items[i] for i in group], buckets[group[0]])
        texts = encoder.captions([items[i].caption for i in group])
        for k, i in enumerate(group):
            partial = files[i].with_suffix(".partial")
            save_file({"latents": latents[k].contiguous().cpu(), "text": texts[k].contiguous().cpu()}, partial)
            partial.replace(files[i])
    return files


def _cache_key(item: TrainingImage, bucket: Size, model_identity: str) -> str:
    stat = item.path.stat()
    fields = [item.relpath, stat.st_size, stat.st_mtime_ns, item.caption, list(bucket), model_identity]
    if item.background != (255, 255, 255):  # the default leaves the keys of existing caches as they were
        fields.append(list(item.background))
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:32]
