"""Aspect-ratio bucketing: train each image near its own shape instead of a square crop.

Buckets are sizes of about ``resolution**2`` pixels whose sides are multiples of a step
the model can take (the VAE and UNet downsampling). Each image goes to the bucket with
the nearest aspect ratio and is resized to cover it, so only a thin margin is cropped.
"""

from __future__ import annotations

import math

from PIL import Image

from lora_tasks.errors import DatasetError
from lora_tasks.spec.schema import TrainingSection

Size = tuple[int, int]


def auto_bucket_step(resolution: int, divisor: int) -> int:
    """About an eighth of the resolution (64 px at 512), rounded up to what the model divides by."""
    return divisor * max(1, math.ceil((resolution // 8) / divisor))


def make_buckets(resolution: int, step: int, max_aspect_ratio: float) -> list[Size]:
    """All (width, height) with sides in multiples of ``step`` and area at most resolution**2."""
    area = resolution * resolution
    square = max(step, resolution // step * step)
    buckets = {(square, square)}
    width = step
    while width <= area // step:
        height = area // width // step * step
        if height >= step and max(width, height) / min(width, height) <= max_aspect_ratio:
            buckets.update({(width, height), (height, width)})
        width += step
    return sorted(buckets)


def nearest_bucket(size: Size, buckets: list[Size]) -> Size:
    """The bucket whose aspect ratio is closest (in log space) to the image's; ties go to the larger."""
    ratio = math.log(size[0] / size[1])
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - ratio), -b[0] * b[1]))


def resize_to_bucket(image: Image.Image, bucket: Size) -> Image.Image:
    """Scale the image to cover the bucket, then trim the overflow equally from both sides."""
    width, height = image.size
    scale = max(bucket[0] / width, bucket[1] / height)
    resized = image.resize(
        (max(bucket[0], round(width * scale)), max(bucket[1], round(height * scale))),
        Image.Resampling.LANCZOS,
    )
    left = (resized.width - bucket[0]) // 2
    top = (resized.height - bucket[1]) // 2
    return resized.crop((left, top, left + bucket[0], top + bucket[1]))


def training_buckets(sizes: list[Size], cfg: TrainingSection, divisor: int) -> list[Size]:
    """The bucket of each image for a job's resolution and bucketing settings."""
    step = cfg.bucket_step
    if step == "auto":
        step = auto_bucket_step(cfg.resolution, divisor)
    elif step % divisor:
        raise DatasetError(f"training_config.bucket_step {step} is not a multiple of {divisor}, the base "
                           f"model's size granularity. Fix: use a multiple of {divisor} or 'auto'")
    if not cfg.bucketing:
        side = max(step, cfg.resolution // step * step)
        return [(side, side)] * len(sizes)
    buckets = make_buckets(cfg.resolution, step, cfg.max_aspect_ratio)
    return [nearest_bucket(size, buckets) for size in sizes]


def upscaled_images(names: list[str], sizes: list[Size], buckets: list[Size], allow: bool) -> str | None:
    """The warning for images smaller than their bucket (resizing blurs them), with their count and sizes;
    a DatasetError instead when the spec does not allow upscaling."""
    small = [(name, size, bucket) for name, size, bucket in zip(names, sizes, buckets, strict=True)
             if size[0] < bucket[0] or size[1] < bucket[1]]
    if not small:
        return None
    worst = max(max(b[0] / s[0], b[1] / s[1]) for _, s, b in small)
    listed = ", ".join(f"{name} {s[0]}x{s[1]} (bucket {b[0]}x{b[1]})" for name, s, b in small[:10])
    more = f" and {len(small) - 10} more" if len(small) > 10 else ""
    found = f"{len(small)} of {len(sizes)} images are smaller than their training bucket: {listed}{more}"
    if not allow:
        raise DatasetError(f"{found}. training_config.allow_upscale is false. Fix: replace them with larger "
                           "images, lower training_config.resolution, or allow upscaling")
    return (f"{found}; they are upscaled (up to x{worst:.2f}), which blurs them. Fix: use larger images, lower "
            "training_config.resolution, or set training_config.allow_upscale: false to refuse them")
