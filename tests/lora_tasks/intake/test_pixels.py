"""to_rgb, one row per mode and container: write known pixels, reopen, convert, compare with a numpy reference.

References are computed from the values written, never through Pillow's conversions. Tolerances: 0 for
lossless files (Pillow's alpha_composite matches round(a*c + (1-a)*bg) exactly on these inputs; ≤1 level
would still be acceptable), 1 where Pillow itself keeps only the high byte of 16-bit samples, 2 where
littlecms applies an ICC profile, and a few levels for lossy JPEG and AVIF.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lora_tasks.colours import parse_background
from lora_tasks.intake.pixels import to_rgb

SIZE = (13, 10)
"""Width, height: odd, so reduce(2) has to round up."""

PALETTE = np.random.default_rng(0).integers(0, 256, (256, 3))
MAGENTA = (255, 0, 255)
RED, BLUE = (255, 0, 0), (0, 0, 255)

Build = Callable[[Path, np.ndarray], np.ndarray]
"""Writes the sample at the path and returns the RGB expected over the given background."""


def noise(seed: int, *channels: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], *channels), dtype=np.uint8)


def grey(levels: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(levels)[..., None], 3, axis=2)


def blend(colour: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    a = alpha[..., None] / 255
    return np.round(a * colour + (1 - a) * bg)


def gradient16() -> np.ndarray:
    """0..65535 over the image, with the pixel after the first set to 32896 (= 128 * 257)."""
    values = np.linspace(0, 65535, SIZE[0] * SIZE[1]).round().astype(np.uint16).reshape(SIZE[1], SIZE[0])
    values[0, 1] = 32896
    return values


def blocks(*colours: tuple[int, ...]) -> np.ndarray:
    """16x16 flat blocks side by side, friendly to lossy codecs."""
    return np.concatenate([np.full((16, 16, len(c)), c, np.uint8) for c in colours], axis=1)


def rgb(path: Path, bg: np.ndarray) -> np.ndarray:
    pixels = noise(1, 3)
    Image.fromarray(pixels).save(path)
    return pixels


def luminance(path: Path, bg: np.ndarray) -> np.ndarray:
    levels = noise(2)
    Image.fromarray(levels).save(path)
    return grey(levels)


def bilevel(path: Path, bg: np.ndarray) -> np.ndarray:
    bits = noise(3) > 127
    Image.fromarray(bits).save(path)
    return grey(bits * 255)


def palette(path: Path, bg: np.ndarray, size: tuple[int, int] = SIZE, transparent: int | None = None) -> np.ndarray:
    index = noise(4, size=size)
    if transparent is not None:
        index[0, 0] = transparent
    image = Image.frombytes("P", size, index.tobytes())
    image.putpalette(PALETTE.astype(np.uint8).tobytes())
    image.save(path, **({} if transparent is None else {"transparency": transparent}))
    colour = PALETTE[index]
    if transparent is not None:
        colour[index == transparent] = bg
    return colour


def palette_alpha(path: Path, bg: np.ndarray) -> np.ndarray:
    index, alphas = noise(5), noise(6, size=(256, 1))[0]
    image = Image.frombytes("P", SIZE, index.tobytes())
    image.putpalette(PALETTE.astype(np.uint8).tobytes())
    image.save(path, transparency=alphas.tobytes())
    return blend(PALETTE[index], alphas[index], bg)


def palette_with_alpha_band(path: Path, bg: np.ndarray) -> np.ndarray:
    index, alpha = noise(7), noise(8)
    image = Image.frombytes("PA", SIZE, np.stack([index, alpha], axis=-1).tobytes())
    image.putpalette(PALETTE.astype(np.uint8).tobytes())
    image.save(path)
    return blend(PALETTE[index], alpha, bg)


def grey_alpha(path: Path, bg: np.ndarray) -> np.ndarray:
    pixels = noise(9, 2)
    Image.fromarray(pixels).save(path)
    return blend(grey(pixels[..., 0]), pixels[..., 1], bg)


def hidden_under_alpha(path: Path, bg: np.ndarray, **options: object) -> np.ndarray:
    """Alpha 0, 128 or 255; magenta under every fully transparent pixel must not show."""
    colour = noise(10, 3)
    alpha = np.random.default_rng(11).choice(np.array([0, 128, 255], np.uint8), (SIZE[1], SIZE[0]))
    colour[alpha == 0] = MAGENTA
    Image.fromarray(np.dstack([colour, alpha])).save(path, **options)
    expected = blend(colour, alpha, bg)
    assert (expected[alpha == 0] == bg).all()
    return expected


def colour_key(path: Path, bg: np.ndarray, channels: tuple[int, ...] = (3,)) -> np.ndarray:
    """tRNS: every pixel equal to the first one's value is transparent."""
    pixels = noise(12, *channels)
    key = pixels[0, 0]
    Image.fromarray(pixels).save(path, transparency=tuple(key.tolist()) if channels else int(key))
    expected = grey(pixels) if not channels else pixels.copy()
    expected[(pixels == key).reshape(SIZE[1], SIZE[0], -1).all(axis=-1)] = bg
    return expected


def grey16(path: Path, bg: np.ndarray, transparent: int | None = None) -> np.ndarray:
    values = gradient16()
    expected = grey(np.round(values / 257))
    assert expected[0, 1, 0] == 128 and expected.max() == 255
    if transparent is None:
        Image.fromarray(values).save(path)
        return expected
    values[1, 0] = transparent
    Image.fromarray(values).save(path, transparency=transparent)
    expected[values == transparent] = bg
    return expected


def grey16_tiff(path: Path, bg: np.ndarray, mode: str) -> np.ndarray:
    values = gradient16()
    Image.frombytes(mode, SIZE, values.astype(">u2" if mode == "I;16B" else "<u2").tobytes()).save(path)
    return grey(np.round(values / 257))


def int32(path: Path, bg: np.ndarray, low: int, high: int) -> np.ndarray:
    """Mode 'I' scaled by the range its values reach: 8-bit as is, 16-bit / 257, beyond by 2**31 - 1."""
    values = np.random.default_rng(13).integers(low, high, (SIZE[1], SIZE[0]), endpoint=True, dtype=np.int64)
    values[0, :2] = low, high
    Image.fromarray(values.astype(np.int32)).save(path)
    full_scale = 255 if high <= 255 else 65535 if high <= 65535 else 2**31 - 1
    return grey(np.clip(np.round(values * 255 / full_scale), 0, 255))


def floats(path: Path, bg: np.ndarray, low: float, high: float) -> np.ndarray:
    """Mode 'F': [0, 1] scaled by 255 (NaN as 0), anything wider clipped to [0, 255]."""
    values = np.random.default_rng(14).uniform(low, high, (SIZE[1], SIZE[0])).astype(np.float32)
    values[0, :3] = low, high, np.nan
    Image.fromarray(values).save(path)
    scale = 255 if high <= 1 else 1
    return grey(np.clip(np.round(np.nan_to_num(values) * scale), 0, 255))


CMYK_BLOCKS = blocks((0, 255, 255, 0), (0, 0, 0, 128), (200, 30, 0, 20), (10, 10, 10, 240))


def cmyk(path: Path, bg: np.ndarray, **options: object) -> np.ndarray:
    """Without a (usable) profile: Pillow's formula, R = (255 - C) * (255 - K) / 255 and so on."""
    Image.fromarray(CMYK_BLOCKS, "CMYK").save(path, **options)
    ink = CMYK_BLOCKS.astype(float)
    return np.round((255 - ink[..., :3]) * (255 - ink[..., 3:]) / 255)


def lightness_from_cyan_profile() -> bytes:
    """A v2 CMYK printer profile whose A2B0 table gives L* = 100 * (1 - C / 255), a* = b* = 0, ignoring M, Y, K."""
    ramp = bytes(range(256))
    clut = bytes(b for corner in range(16) for b in (0 if corner & 8 else 255, 128, 128))
    identity = b"".join(struct.pack(">i", 65536 * (i % 4 == 0)) for i in range(9))
    d50 = struct.pack(">3i", 63190, 65536, 54061)
    tags = [(b"desc", b"desc" + bytes(4) + struct.pack(">I", 5) + b"test\0" + bytes(78)),
            (b"wtpt", b"XYZ " + bytes(4) + d50),
            (b"A2B0", b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + identity + ramp * 4 + clut + ramp * 3)]
    table, body = b"", b""
    start = 128 + 4 + 12 * len(tags)
    for signature, data in tags:
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", start + len(body), len(data))
        body += data
    header = (struct.pack(">I4xI", start + len(body), 0x02100000) + b"prtrCMYKLab " + bytes(12) + b"acsp"
              + bytes(28) + d50 + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + body


def cmyk_with_profile(path: Path, bg: np.ndarray) -> np.ndarray:
    """Cyan 0..255 under full black: Pillow's formula gives black, the profile a grey ramp (CIE L* -> sRGB)."""
    ink = noise(15, 4, size=(16, 16))
    ink[..., 0], ink[..., 3] = np.arange(256, dtype=np.uint8).reshape(16, 16), 255
    Image.fromarray(ink, "CMYK").save(path, icc_profile=lightness_from_cyan_profile())
    lightness = 100 * (1 - ink[..., 0] / 255)
    y = np.where(lightness > 8, ((lightness + 16) / 116) ** 3, lightness / 903.3)
    return grey(np.round(255 * np.where(y <= 0.0031308, 12.92 * y, 1.055 * y ** (1 / 2.4) - 0.055)))


def avif(path: Path, bg: np.ndarray) -> np.ndarray:
    pixels = blocks((200, 50, 100), (20, 220, 40), (240, 240, 240), (10, 10, 90))
    Image.fromarray(pixels).save(path, quality=95, subsampling="4:4:4")
    return pixels


def animation(path: Path, bg: np.ndarray, frame: int = 0, **options: object) -> np.ndarray:
    """Frame 0 red, frame 1 blue."""
    Image.new("RGB", SIZE, RED).save(path, save_all=True, append_images=[Image.new("RGB", SIZE, BLUE)],
                                     duration=100, **options)
    return np.full((SIZE[1], SIZE[0], 3), (RED, BLUE)[frame])


def png16(path: Path, bg: np.ndarray) -> np.ndarray:
    """16-bit RGB PNG, written by hand since Pillow cannot."""
    samples = np.random.default_rng(16).integers(0, 65536, (SIZE[1], SIZE[0], 3), dtype=np.uint16)
    samples[0, 0] = 65535, 32896, 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in samples)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", *SIZE, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return np.round(samples / 257)


@dataclass(frozen=True)
class Row:
    name: str
    """The file written; its suffix picks the format."""
    build: Build
    opened: str
    """The mode Pillow 13 opens the file (on ``frame``) as."""
    tolerance: int = 0
    background: str = "white"
    frame: int = 0


ROWS = [
    pytest.param(Row("a.png", rgb, "RGB"), id="rgb-png"),
    pytest.param(Row("a.png", luminance, "L"), id="l-png"),
    pytest.param(Row("a.png", bilevel, "1"), id="1bit-png"),
    pytest.param(Row("a.bmp", bilevel, "1"), id="1bit-bmp"),
    pytest.param(Row("a.png", palette, "P"), id="p-png"),
    pytest.param(Row("a.gif", palette, "P"), id="p-gif"),
    pytest.param(Row("a.gif", partial(palette, transparent=7), "P"), id="p-transparent-index-gif"),
    pytest.param(Row("a.png", partial(palette, transparent=7), "P"), id="p-transparent-index-png"),
    pytest.param(Row("a.gif", partial(palette, transparent=7), "P", background="#123456"),
                 id="p-transparent-index-gif-on-123456"),
    pytest.param(Row("a.png", palette_alpha, "P"), id="p-trns-alphas-png"),
    pytest.param(Row("a.tif", palette_with_alpha_band, "PA"), id="pa-tiff"),
    pytest.param(Row("a.png", grey_alpha, "LA"), id="la-png"),
    pytest.param(Row("a.png", hidden_under_alpha, "RGBA"), id="rgba-hidden-png"),
    pytest.param(Row("a.png", hidden_under_alpha, "RGBA", background="#000000"), id="rgba-hidden-png-on-black"),
    pytest.param(Row("a.png", hidden_under_alpha, "RGBA", background="#123456"), id="rgba-hidden-png-on-123456"),
    pytest.param(Row("a.png", hidden_under_alpha, "RGBA", background="teal"), id="rgba-hidden-png-on-teal"),
    pytest.param(Row("a.webp", partial(hidden_under_alpha, lossless=True, exact=True), "RGBA"),
                 id="rgba-hidden-webp-lossless"),
    pytest.param(Row("a.png", colour_key, "RGB"), id="rgb-trns-key-png"),
    pytest.param(Row("a.png", partial(colour_key, channels=()), "L"), id="l-trns-key-png"),
    pytest.param(Row("a.png", grey16, "I;16"), id="i16-png-gradient"),
    pytest.param(Row("a.png", partial(grey16, transparent=4000), "I;16", background="#123456"),
                 id="i16-trns-key-png"),
    pytest.param(Row("a.tif", partial(grey16_tiff, mode="I;16"), "I;16"), id="i16-tiff"),
    pytest.param(Row("a.tif", partial(grey16_tiff, mode="I;16B"), "I;16B"), id="i16b-tiff"),
    pytest.param(Row("a.tif", partial(grey16_tiff, mode="I;16L"), "I;16"), id="i16l-tiff-opens-as-i16"),
    pytest.param(Row("a.png", png16, "RGB", tolerance=1), id="rgb48-png-high-byte"),
    pytest.param(Row("a.tif", partial(int32, low=-50, high=255), "I"), id="i32-tiff-8bit-range"),
    pytest.param(Row("a.tif", partial(int32, low=-50, high=65535), "I"), id="i32-tiff-16bit-range"),
    pytest.param(Row("a.tif", partial(int32, low=-5, high=2**31 - 1), "I"), id="i32-tiff-32bit-range"),
    pytest.param(Row("a.tif", partial(floats, low=0.0, high=1.0), "F"), id="f-tiff-unit"),
    pytest.param(Row("a.tif", partial(floats, low=-20.0, high=300.0), "F"), id="f-tiff-levels"),
    pytest.param(Row("a.jpg", partial(cmyk, quality=95), "CMYK", tolerance=2), id="cmyk-jpeg"),
    pytest.param(Row("a.tif", cmyk, "CMYK"), id="cmyk-tiff"),
    pytest.param(Row("a.tif", cmyk_with_profile, "CMYK", tolerance=2), id="cmyk-tiff-icc"),
    pytest.param(Row("a.jpg", partial(cmyk, quality=95, icc_profile=b"not a profile"), "CMYK", tolerance=2),
                 id="cmyk-jpeg-unusable-icc"),
    pytest.param(Row("a.avif", avif, "RGB", tolerance=4), id="avif-rgb"),
    pytest.param(Row("a.gif", animation, "P"), id="animated-gif-frame0"),
    pytest.param(Row("a.gif", partial(animation, frame=1), "RGB", frame=1), id="animated-gif-frame1"),
    pytest.param(Row("a.png", animation, "RGB"), id="animated-png-frame0"),
    pytest.param(Row("a.webp", partial(animation, lossless=True), "RGB"), id="animated-webp-frame0"),
    *(pytest.param(Row(f"a.{fmt}", partial(palette, size=size), "P"), id=f"p-{fmt}-{size[0]}x{size[1]}")
      for fmt in ("gif", "png") for size in ((1, 1), (127, 128), (128, 128))),
]


@pytest.mark.parametrize("row", ROWS)
def test_to_rgb(row: Row, tmp_path: Path) -> None:
    background = parse_background(row.background)
    path = tmp_path / row.name
    expected = row.build(path, np.array(background))
    with Image.open(path) as image:
        image.seek(row.frame)
        assert image.mode == row.opened
        converted = to_rgb(image, background)
        assert converted.mode == "RGB"
        pixels = np.asarray(converted, dtype=np.int64)
        assert pixels.shape == expected.shape
        assert np.abs(pixels - expected).max() <= row.tolerance
        width, height = converted.size
        half = converted.reduce(2)
    assert (half.mode, half.size) == ("RGB", ((width + 1) // 2, (height + 1) // 2))


def test_rgb_is_returned_as_it_is() -> None:
    image = Image.new("RGB", SIZE, RED)
    assert to_rgb(image) is image


def test_why_not_plain_convert() -> None:
    """Pillow's own conversion saturates 16-bit grey and reveals the colour under alpha 0."""
    deep = Image.fromarray(np.array([[32896, 65535]], np.uint16))
    assert deep.convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    assert list(to_rgb(deep).getdata()) == [(128, 128, 128), (255, 255, 255)]
    hidden = Image.new("RGBA", (1, 1), (*MAGENTA, 0))
    assert hidden.convert("RGB").getpixel((0, 0)) == MAGENTA
    assert to_rgb(hidden).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(("value", "expected"), [
    ("#000000", (0, 0, 0)),
    ("#123456", (0x12, 0x34, 0x56)),
    ("#ABCDEF", (0xAB, 0xCD, 0xEF)),
    ("#fff", (255, 255, 255)),
    ("#1a2", (0x11, 0xAA, 0x22)),
    ("white", (255, 255, 255)),
    ("Navy", (0, 0, 128)),
    (" black ", (0, 0, 0)),
], ids=lambda v: repr(v) if isinstance(v, str) else None)
def test_parse_background(value: str, expected: tuple[int, int, int]) -> None:
    assert parse_background(value) == expected


@pytest.mark.parametrize("value", ["", "#", "#12345", "#1234", "#12345678", "123456", "#ggg", "rgb(1, 2, 3)",
                                   "not-a-colour"])
def test_parse_background_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="use '#rrggbb', '#rgb' or a colour name") as caught:
        parse_background(value)
    assert repr(value) in str(caught.value)
