"""Dataset listing with kohya conventions: sidecars, file names, trigger words, repeats, EXIF."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from lora_tasks.errors import DatasetError
from lora_tasks.spec.schema import DatasetSection
from lora_tasks.train.data import collect_images, dataset_fingerprint, load_pixels, tag_frequency

EXIF_ORIENTATION = 0x0112


def image(path: Path, size: tuple[int, int] = (40, 20), orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, (200, 10, 10))
    exif = Image.Exif()
    if orientation:
        exif[EXIF_ORIENTATION] = orientation
    img.save(path, exif=exif)
    return path


@pytest.mark.parametrize(
    ("stem", "sidecar", "trigger", "caption"),
    [
        ("red_fox_01", None, None, "red fox"),
        ("red-fox", "a fox, forest", None, "a fox, forest"),
        ("x", "  a   fox\n\n in snow ", None, "a fox in snow"),
        ("red_fox_02", None, "sks", "sks, red fox"),
        ("y", "sks, a fox", "sks", "sks, a fox"),
        ("z", "a sks fox", "sks", "a sks fox"),
        ("w", "", "sks", "sks"),
    ],
)
def test_captions(tmp_path: Path, stem: str, sidecar: str | None, trigger: str | None, caption: str) -> None:
    image(tmp_path / f"{stem}.jpg")
    if sidecar is not None:
        (tmp_path / f"{stem}.txt").write_text(sidecar)
    [item] = collect_images(tmp_path, DatasetSection(trigger_word=trigger))
    assert item.caption == caption


def test_repeat_folders_and_stable_order(tmp_path: Path) -> None:
    image(tmp_path / "10_style" / "b.png")
    image(tmp_path / "10_style" / "a.png")
    image(tmp_path / "other" / "c.png")
    image(tmp_path / "root.png")
    items = collect_images(tmp_path, DatasetSection(repeats=2))
    assert [(i.relpath, i.repeats, i.folder) for i in items] == [
        ("10_style/a.png", 10, "10_style"), ("10_style/b.png", 10, "10_style"), ("other/c.png", 2, "other"),
        ("root.png", 2, ""),
    ]
    assert tag_frequency(items)["10_style"] == {"a": 1, "b": 1}


def test_exif_rotation_gives_upright_size_and_pixels(tmp_path: Path) -> None:
    image(tmp_path / "r.jpg", (40, 20), orientation=6)  # stored landscape, shown portrait
    [item] = collect_images(tmp_path, DatasetSection())
    assert item.size == (20, 40)
    assert load_pixels(item, (16, 32)).shape == (3, 32, 16)


def test_unicode_and_spaces_in_names(tmp_path: Path) -> None:
    image(tmp_path / "ünï cödé fox 3.png")
    [item] = collect_images(tmp_path, DatasetSection())
    assert item.caption == "ünï cödé fox"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.mkdir(), "holds no images"),
        (lambda root: (root.mkdir(), (root / "bad.png").write_bytes(b"not an image")), r"bad\.png cannot be read"),
        (lambda root: (image(root / "a.png"), (root / "a.txt").write_bytes(b"\xff\xfe\x00bad")), "not UTF-8"),
    ],
)
def test_bad_datasets_name_the_problem(tmp_path: Path, setup, expected: str) -> None:
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DatasetError, match=expected):
        collect_images(root, DatasetSection())


def test_fingerprint_follows_captions(tmp_path: Path) -> None:
    image(tmp_path / "a.png")
    before = dataset_fingerprint(collect_images(tmp_path, DatasetSection()))
    (tmp_path / "a.txt").write_text("new caption")
    assert dataset_fingerprint(collect_images(tmp_path, DatasetSection())) != before


def test_training_reads_every_mode_as_intake_does(tmp_path: Path) -> None:
    """16-bit grey is scaled, not saturated to white; transparency shows dataset.background, not the colour
    hidden under it."""
    import numpy as np

    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    hidden = Image.new("RGBA", (64, 64), (255, 0, 255, 0))  # magenta, fully transparent
    hidden.save(tmp_path / "hidden.png")
    items = {i.relpath: i for i in collect_images(tmp_path, DatasetSection(background="#000000"))}
    deep = load_pixels(items["deep.png"], (64, 64))
    assert -1.0 <= deep.min() < -0.9 and 0.9 < deep.max() <= 1.0 and abs(float(deep.mean())) < 0.05
    assert np.allclose(load_pixels(items["hidden.png"], (64, 64)), -1.0)  # black, not magenta
    with pytest.raises(ValueError, match="background colour 'nope' is not understood"):
        DatasetSection(background="nope")
