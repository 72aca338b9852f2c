"""Aspect-ratio buckets: sizes, assignment and resizing, as a table of cases."""

from __future__ import annotations

import pytest
from PIL import Image

from lora_tasks.errors import DatasetError
from lora_tasks.train.buckets import auto_bucket_step, make_buckets, nearest_bucket, resize_to_bucket, upscaled_images


@pytest.mark.parametrize(
    ("resolution", "divisor", "step"),
    [(512, 64, 64), (1024, 64, 128), (64, 8, 8), (128, 64, 64), (768, 64, 128)],
)
def test_auto_step(resolution: int, divisor: int, step: int) -> None:
    assert auto_bucket_step(resolution, divisor) == step


@pytest.mark.parametrize(("resolution", "step", "ratio"), [(512, 64, 2.0), (64, 8, 4.0), (1024, 64, 4.0)])
def test_buckets_respect_area_step_and_ratio(resolution: int, step: int, ratio: float) -> None:
    buckets = make_buckets(resolution, step, ratio)
    assert (resolution, resolution) in buckets
    for width, height in buckets:
        assert width % step == 0 and height % step == 0
        assert width * height <= resolution * resolution
        assert max(width, height) / min(width, height) <= ratio
    assert buckets == sorted((h, w) for w, h in buckets)  # every landscape bucket has its portrait twin


@pytest.mark.parametrize(
    ("size", "expected"),
    [((512, 512), (512, 512)), ((1024, 512), (704, 320)), ((512, 1024), (320, 704)), ((600, 400), (640, 384)),
     ((4000, 3000), (576, 448)), ((3000, 500), (1024, 256)), ((100, 100), (512, 512))],
)
def test_nearest_bucket_by_aspect_ratio(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert nearest_bucket(size, make_buckets(512, 64, 4.0)) == expected


def test_resize_covers_the_bucket_and_keeps_the_whole_width() -> None:
    image = Image.new("RGB", (200, 100), "white")
    image.paste((255, 0, 0), (0, 0, 10, 100))  # a red band at the left edge
    out = resize_to_bucket(image, (96, 48))
    assert out.size == (96, 48)
    assert out.getpixel((1, 24))[0] > 200 and out.getpixel((1, 24))[1] < 60  # not cropped away


def test_images_smaller_than_their_bucket_are_listed_with_their_sizes() -> None:
    names = [f"img{i}.png" for i in range(13)]
    sizes = [(512, 512), (300, 200)] + [(64, 64)] * 11
    buckets = [(512, 512), (576, 448)] + [(512, 512)] * 11
    warning = upscaled_images(names, sizes, buckets, allow=True)
    assert warning is not None
    assert warning.startswith("12 of 13 images are smaller than their training bucket: img1.png 300x200 "
                              "(bucket 576x448), img2.png 64x64 (bucket 512x512)")
    assert "and 2 more" in warning and "up to x8.00" in warning and "allow_upscale: false" in warning
    assert upscaled_images(names[:1], sizes[:1], buckets[:1], allow=False) is None


def test_upscaling_can_be_refused() -> None:
    with pytest.raises(DatasetError, match=r"1 of 2 images .* b\.png 100x100 \(bucket 128x128\).*allow_upscale is "
                                           r"false. Fix: replace them"):
        upscaled_images(["a.png", "b.png"], [(128, 128), (100, 100)], [(128, 128)] * 2, allow=False)
