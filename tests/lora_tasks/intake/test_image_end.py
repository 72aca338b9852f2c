"""image_end / trailing_bytes on real files written by Pillow, the same files with a zip or a chunk appended,
truncated, corrupted and hand-built edge cases of each format's structure. Nothing may raise."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from PIL import ExifTags, Image

from lora_tasks.intake.image_end import image_end, trailing_bytes
from tests.lora_tasks.intake.corpus import photo

KINDS = ["jpg", "png", "gif", "webp", "bmp", "avif", "tif"]


def picture(seed: int = 0, size: tuple[int, int] = (320, 288)) -> Image.Image:
    """A photo-like picture with noise, so entropy-coded data is dense and holds many 0xFF bytes."""
    noise = Image.frombytes("L", size, random.Random(seed).randbytes(size[0] * size[1])).convert("RGB")
    return Image.blend(photo(seed, size), noise, 0.3)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def exif_with_thumbnail(thumbnail: bytes) -> bytes:
    """APP1 payload: a big-endian TIFF whose IFD0 holds Orientation and whose IFD1 points at a JPEG thumbnail
    stored right after it (JPEGInterchangeFormat / JPEGInterchangeFormatLength)."""
    ifd0 = struct.pack(">H HHI4s I", 1, 0x0112, 3, 1, b"\x00\x01\x00\x00", 26)
    ifd1 = struct.pack(">H HHII HHII I", 2, 0x0201, 4, 1, 56, 0x0202, 4, 1, len(thumbnail), 0)
    return b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd0 + ifd1 + thumbnail


def jpeg_with_thumbnail() -> bytes:
    thumbnail = encode(picture(1, (320, 240)), "JPEG", quality=90)
    return encode(picture(), "JPEG", quality=88, exif=exif_with_thumbnail(thumbnail))


def gif_without_global_palette() -> bytes:
    """Pillow's static GIF with its global colour table moved into the image descriptor as a local one."""
    data = encode(picture().quantize(64), "GIF")
    packed = data[10]
    table_end = 13 + (3 << ((packed & 7) + 1))
    descriptor = data[table_end:table_end + 10]
    assert packed & 0x80 and descriptor[0] == 0x2C and not descriptor[9] & 0x80
    local_flags = bytes([descriptor[9] | 0x80 | (packed & 7)])
    return (data[:10] + bytes([packed & 0x70]) + data[11:13] + descriptor[:9] + local_flags
            + data[13:table_end] + data[table_end + 10:])


def animated_gif() -> bytes:
    frames = [picture(seed, (160, 120)).quantize(32 + seed) for seed in range(4)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0,
                  comment=b"c" * 600, transparency=0, disposal=2)


def animated(fmt: str, **options: Any) -> bytes:
    frames = [picture(seed, (160, 120)) for seed in range(3)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=80, **options)


SAMPLES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "jpeg-baseline": ("jpg", lambda: encode(picture(), "JPEG", quality=88)),
    "jpeg-progressive": ("jpg", lambda: encode(picture(), "JPEG", quality=88, progressive=True)),
    "jpeg-restart-markers": ("jpg", lambda: encode(picture(), "JPEG", quality=88, restart_marker_blocks=3)),
    "jpeg-exif-thumbnail": ("jpg", jpeg_with_thumbnail),
    "jpeg-grey": ("jpg", lambda: encode(picture().convert("L"), "JPEG", quality=80)),
    "jpeg-cmyk": ("jpg", lambda: encode(picture().convert("CMYK"), "JPEG", quality=80)),
    "png-rgb": ("png", lambda: encode(picture(), "PNG")),
    "png-rgba": ("png", lambda: encode(picture().convert("RGBA"), "PNG", optimize=True)),
    "png-palette": ("png", lambda: encode(picture().quantize(16), "PNG", transparency=0)),
    "png-animated": ("png", lambda: animated("PNG")),
    "gif-static": ("gif", lambda: encode(picture().quantize(256), "GIF")),
    "gif-animated": ("gif", animated_gif),
    "gif-no-global-palette": ("gif", gif_without_global_palette),
    "webp-lossy": ("webp", lambda: encode(picture(), "WEBP", quality=80)),
    "webp-lossless": ("webp", lambda: encode(picture().convert("RGBA"), "WEBP", lossless=True)),
    "webp-animated": ("webp", lambda: animated("WEBP")),
    "bmp-rgb": ("bmp", lambda: encode(picture(), "BMP")),
    "bmp-palette": ("bmp", lambda: encode(picture().quantize(16), "BMP")),
    "avif-still": ("avif", lambda: encode(picture(), "AVIF", quality=60)),
    "avif-animated": ("avif", lambda: animated("AVIF", quality=60)),
}
"""Name -> (sniffed kind, builder of the file's bytes)."""


@cache
def sample(name: str) -> bytes:
    return SAMPLES[name][1]()


@cache
def zip_payload() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("payload.txt", "not an image\n" * 50)
        archive.writestr("run.sh", "#!/bin/sh\necho hi\n")
    return out.getvalue()


def png_chunk(chunk_type: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + chunk_type + payload + struct.pack(">I", zlib.crc32(chunk_type + payload))


def box(box_type: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I", 8 + len(payload)) + box_type + payload


def assert_in_range(data: bytes, kind: str) -> None:
    end = image_end(data, kind)
    assert end is None or 0 <= end <= len(data)
    assert 0 <= trailing_bytes(data, kind) <= len(data)


@pytest.mark.parametrize("name", SAMPLES)
def test_clean_file_ends_at_its_length(name: str) -> None:
    kind, data = SAMPLES[name][0], sample(name)
    assert image_end(data, kind) == len(data)
    assert trailing_bytes(data, kind) == 0


@pytest.mark.parametrize("name", SAMPLES)
def test_appended_zip_is_all_trailing(name: str) -> None:
    kind, data = SAMPLES[name][0], sample(name)
    assert image_end(data + zip_payload(), kind) == len(data)
    assert trailing_bytes(data + zip_payload(), kind) == len(zip_payload())


def test_samples_hold_the_structures_they_are_named_for() -> None:
    assert sample("jpeg-progressive").count(b"\xff\xda") > 3
    assert any(b"\xff" + bytes([rst]) in sample("jpeg-restart-markers") for rst in range(0xD0, 0xD8))
    with_thumbnail = sample("jpeg-exif-thumbnail")
    assert with_thumbnail.find(b"\xff\xd9") < len(with_thumbnail) - 2
    exif = Image.open(io.BytesIO(with_thumbnail)).getexif().get_ifd(ExifTags.IFD.IFD1)
    assert exif[0x0202] > 10_000
    assert sample("gif-animated").count(b"\x21\xf9") >= 4
    assert b"acTL" in sample("png-animated") and sample("png-rgb").count(b"IDAT") > 2
    assert b"moov" in sample("avif-animated")


def test_gif_without_global_palette_decodes_like_the_original() -> None:
    original = Image.open(io.BytesIO(encode(picture().quantize(64), "GIF"))).convert("RGB")
    rewritten = Image.open(io.BytesIO(gif_without_global_palette()))
    assert rewritten.palette is not None and not sample("gif-no-global-palette")[10] & 0x80
    assert rewritten.convert("RGB").tobytes() == original.tobytes()


def test_png_chunk_after_iend_is_trailing() -> None:
    chunk = png_chunk(b"tEXt", b"Comment\x00hidden after the end")
    assert trailing_bytes(sample("png-rgb") + chunk, "png") == len(chunk)


@pytest.mark.parametrize("name", ["jpeg-baseline", "jpeg-progressive", "jpeg-restart-markers", "jpeg-exif-thumbnail"])
@pytest.mark.parametrize("cut", [2, 3, 20, 200, 5_000, -5_000, -2, -1])
def test_truncated_jpeg_is_none(name: str, cut: int) -> None:
    assert image_end(sample(name)[:cut], "jpg") is None


@pytest.mark.parametrize("name", ["png-rgb", "gif-static", "gif-animated", "webp-lossy", "bmp-rgb"])
def test_truncated_file_is_none(name: str) -> None:
    kind, data = SAMPLES[name][0], sample(name)
    for cut in (len(data) // 2, len(data) - 1):
        assert image_end(data[:cut], kind) is None


SOI, EOI, SOS_HEADER = b"\xff\xd8", b"\xff\xd9", b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"


@pytest.mark.parametrize(("data", "expected"), [
    (SOI + EOI, 4),
    (SOI + b"\xff\xff\xff" + EOI + b"junk", 7),
    (SOI + b"\xff\x01" + b"\xff\xfe\x00\x04hi" + EOI, 12),
    (SOI + b"\xff\xfe\x00\x06\xff\xd9\xff\xd9" + EOI + b"x", 12),
    (SOI + SOS_HEADER + b"\x12\xff\x00\x34\xff\xd3\x56\xff\xff" + EOI, 23),
    (SOI + SOS_HEADER + b"\x12\xff\x00\x34" + SOS_HEADER + b"\x56" + EOI + b"x", 29),
    (SOI + b"\xff\x00" + EOI, None),
    (SOI + b"\xff\xd8" + EOI, None),
    (SOI + b"\xfe\x00\x04hi" + EOI, None),
    (SOI + b"\xff\xfe\x00\x01" + EOI, None),
    (SOI + b"\xff\xfe\x00\x40hi" + EOI, None),
    (SOI + b"\xff\xfe\x00", None),
    (SOI + b"\xff\xff", None),
    (SOI + SOS_HEADER + b"\x12\x34\xff", None),
    (SOI, None),
    (b"\xff\xd9", None),
])
def test_jpeg_marker_walk(data: bytes, expected: int | None) -> None:
    assert image_end(data, "jpg") == expected


@pytest.mark.parametrize("where", ["after SOI", "before EOI"])
def test_jpeg_fill_bytes_before_markers(where: str) -> None:
    data = sample("jpeg-baseline")
    filled = data[:2] + b"\xff\xff" + data[2:] if where == "after SOI" else data[:-2] + b"\xff" * 5 + data[-2:]
    assert image_end(filled, "jpg") == len(filled)


def test_gif_unknown_block_is_none() -> None:
    data = sample("gif-static")
    assert image_end(data[:-1] + b"\x99" + data[-1:], "gif") is None


def riff(size: int, body: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", size) + b"WEBP" + body


@pytest.mark.parametrize(("data", "expected"), [
    (riff(9, b"VP8L\x01"), 17),
    (riff(9, b"VP8L\x01\x00"), 18),
    (riff(9, b"VP8L\x01\x00zip"), 18),
    (riff(8, b"VP8L"), 16),
    (riff(3, b""), None),
    (riff(100, b"VP8L"), None),
    (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
])
def test_webp_riff_size(data: bytes, expected: int | None) -> None:
    assert image_end(data, "webp") == expected


def bmp_header(size: int, pixel_offset: int) -> bytes:
    return b"BM" + struct.pack("<I4xI", size, pixel_offset) + bytes(40)


@pytest.mark.parametrize(("data", "expected"), [
    (bmp_header(54, 54), 54),
    (bmp_header(54, 54) + b"zip", 54),
    (bmp_header(0, 54), None),
    (bmp_header(40, 54), None),
    (bmp_header(999, 54), None),
    (b"BM\x36\x00", None),
])
def test_bmp_file_size(data: bytes, expected: int | None) -> None:
    assert image_end(data, "bmp") == expected


FTYP = box(b"ftyp", b"avif\x00\x00\x00\x00avifmif1")
META, MDAT = box(b"meta", bytes(20)), box(b"mdat", bytes(30))
HEAD = len(FTYP) + len(META)


@pytest.mark.parametrize(("data", "expected"), [
    (FTYP + META + MDAT, HEAD + len(MDAT)),
    (FTYP + META + MDAT + box(b"free", bytes(4)) + box(b"uuid", bytes(16)), HEAD + len(MDAT) + 12 + 24),
    (FTYP + META + MDAT + box(b"zzzz", b"payload"), HEAD + len(MDAT)),
    (FTYP + META + box(b"\x00\x01PK", b"payload") + MDAT, HEAD),
    (FTYP + META + struct.pack(">I4sQ", 1, b"mdat", 16 + 30) + bytes(30), HEAD + 46),
    (FTYP + META + struct.pack(">I4sQ", 1, b"mdat", 8) + bytes(30), HEAD),
    (FTYP + META + struct.pack(">I4s", 1, b"mdat") + bytes(4), HEAD),
    (FTYP + META + struct.pack(">I4s", 0, b"mdat") + bytes(30), HEAD + 38),
    (FTYP + META + MDAT[:-1], HEAD),
    (FTYP + META + struct.pack(">I4s", 4, b"mdat") + bytes(30), HEAD),
    (FTYP + META + MDAT[:6], HEAD),
    (META + FTYP + MDAT, None),
    (FTYP[:-1], None),
    (b"", None),
])
def test_isobmff_box_walk(data: bytes, expected: int | None) -> None:
    assert image_end(data, "avif") == expected


def test_truncated_avif_ends_before_the_cut_box() -> None:
    data = sample("avif-still")
    end = image_end(data[:-10], "avif")
    assert end is not None and 0 < end < len(data) - 10
    assert data[end + 4:end + 8] == b"mdat"


def test_unknown_kinds_have_no_end() -> None:
    tiff = encode(picture(), "TIFF")
    assert image_end(tiff, "tif") == len(tiff)
    assert image_end(b"II+\x00" + bytes(20), "tif") is None  # BigTIFF is not walked
    assert image_end(sample("jpeg-baseline"), "heic") is None


@pytest.mark.parametrize("name", SAMPLES)
def test_wrong_kind_is_none(name: str) -> None:
    kind, data = SAMPLES[name][0], sample(name)
    for other in KINDS:
        if other != kind:
            assert image_end(data, other) is None


GARBAGE = [b"", b"\x00", b"\xff", b"\xff\xd8", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"GIF89a" + bytes(7),
           b"RIFF", b"BM", b"\x00\x00\x00\x00ftyp", b"\x00\x00\x00\x01ftyp", random.Random(0).randbytes(5_000)]


@pytest.mark.parametrize("kind", KINDS)
def test_garbage_never_raises(kind: str) -> None:
    rng = random.Random(kind)
    signatures = [g for g in GARBAGE if g] + [sample(name)[:16] for name in SAMPLES]
    for blob in GARBAGE + [s + rng.randbytes(rng.randrange(1, 300)) for s in signatures for _ in range(20)]:
        assert_in_range(blob, kind)


@pytest.mark.parametrize("name", SAMPLES)
def test_prefixes_and_corruptions_never_raise(name: str) -> None:
    kind, data = SAMPLES[name][0], sample(name)
    rng = random.Random(name)
    for cut in sorted(rng.sample(range(len(data)), 60)) + list(range(40)):
        assert_in_range(data[:cut], kind)
    for _ in range(150):
        corrupted = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            corrupted[rng.randrange(min(len(data), 2_000))] = rng.randrange(256)
        assert_in_range(bytes(corrupted), kind)


def test_a_multi_picture_jpeg_ends_after_its_last_listed_picture() -> None:
    """Stereo MPO and Ultra HDR photos keep a second JPEG after the first one's EOI, listed in an MPF index:
    not trailing data. Anything after the last listed picture still is, and an index that lies counts for
    nothing."""
    out = io.BytesIO()
    photo(1).save(out, "MPO", save_all=True, append_images=[photo(2)])
    data = out.getvalue()
    first_end = data.index(b"\xff\xd9\xff\xd8") + 2
    assert first_end < len(data) and image_end(data, "jpg") == len(data)
    assert trailing_bytes(data + b"PK\x03\x04 payload", "jpg") == len(b"PK\x03\x04 payload")
    lying = data[:first_end] + b"\x00" * (len(data) - first_end)  # the index points at no picture
    assert image_end(lying, "jpg") == first_end


@pytest.mark.parametrize("mode", ["RGB", "L", "1", "P", "RGBA", "CMYK"])
@pytest.mark.parametrize("compression", [None, "tiff_lzw", "tiff_deflate", "packbits"])
def test_a_tiff_ends_where_its_furthest_strip_or_tag_does(mode: str, compression: str | None) -> None:
    out = io.BytesIO()
    photo(3).convert(mode).save(out, "TIFF", **({"compression": compression} if compression else {}))
    data = out.getvalue()
    assert image_end(data, "tif") == len(data)
    assert trailing_bytes(data + b"PK\x03\x04 payload", "tif") == len(b"PK\x03\x04 payload")


def test_multi_page_and_exif_tiffs_are_walked_whole() -> None:
    pages, tagged = io.BytesIO(), io.BytesIO()
    photo(4).save(pages, "TIFF", save_all=True, append_images=[photo(5)])  # ends with a 4-byte zero link
    exif = Image.Exif()
    exif[0x010E] = "a description " * 20
    photo(6).save(tagged, "TIFF", exif=exif)
    for data in (pages.getvalue(), tagged.getvalue()):
        assert trailing_bytes(data, "tif") == 0
        assert trailing_bytes(data + b"<html>", "tif") in (6, 10)  # the zero link counts once data follows it
