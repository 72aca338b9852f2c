"""A hostile and messy upload: every trap the intake must refuse, beside every odd but good image.

``TRAPS`` maps a sample's path to the reason the filter must give; ``GOOD`` maps each good
sample to the caption source it must end with; ``SIDECARS`` maps each unusable caption file to
its reason. Local-only traps (a link, a FIFO) and S3-only ones (keys a file system cannot hold)
are listed apart. Built fresh per test session from code; nothing is downloaded.
"""

from __future__ import annotations

import io
import os
import struct
import tarfile
import unicodedata
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.lora_tasks.intake.corpus import EICAR, jpeg_bytes, photo, png_with_size

MIN_SIDE = 128
FILTER = {"min_side": MIN_SIDE, "max_side": 4096, "max_pixels": 20_000_000, "near_duplicate_distance": 6}
NFD_NAME = unicodedata.normalize("NFD", "good/café.jpg")
NFC_CAPTION = unicodedata.normalize("NFC", "good/café.txt")

GOOD: dict[str, str] = {
    "good/rgb.jpg": "sidecar",
    "good/grey.png": "filename",
    "good/palette.png": "filename",
    "good/palette_transparent.png": "filename",
    "good/bilevel.png": "filename",
    "good/deep16.png": "filename",
    "good/deep16.tif": "filename",
    "good/grey_alpha.png": "filename",
    "good/rgba.png": "sidecar",
    "good/cmyk.jpg": "filename",
    "good/cmyk.tif": "filename",
    "good/big.gif": "filename",
    "good/boundary_128.gif": "filename",
    "good/animated.gif": "filename",
    "good/photo.avif": "filename",
    "good/lossless.webp": "filename",
    "good/photo.bmp": "filename",
    "good/multi_picture.jpg": "filename",
    "good/with space ü\nnewline.jpg": "filename",
    "good/tab\tname.jpg": "filename",
    "good/" + "long" * 50 + ".jpg": "filename",
    NFD_NAME: "sidecar",
    unicodedata.normalize("NFC", "good/né.jpg"): "filename",
    unicodedata.normalize("NFD", "good/né.jpg"): "filename",
    "good/infected_caption.jpg": "filename",
    "good/empty_caption.jpg": "filename",
    "good/blank_caption.jpg": "filename",
    "good/latin1_caption.jpg": "filename",
    "good/huge_caption.jpg": "filename",
    "good/binary_caption.jpg": "filename",
    "dupes/z_original.png": "sidecar",
    "dupes/b_large.png": "filename",
    "bundle.zip/inside/photo_a.jpg": "sidecar",
    "bundle.zip/inside/photo_b.jpg": "filename",
    "dupes.zip/a.jpg": "filename",
}
"""Kept, with the caption source each must end with (captions of dropped duplicates move over)."""

TRAPS: dict[str, str] = {
    "dupes/a_recompressed.jpg": "near_duplicate",
    "more/copy_of_rgb.jpg": "exact_duplicate",
    "more/resaved_low_quality.jpg": "near_duplicate",
    "dupes/small_copy.png": "near_duplicate",
    "bad/elf.png": "unsupported_type",
    "bad/windows.jpg": "unsupported_type",
    "bad/document.pdf": "unsupported_type",
    "bad/page.png": "unsupported_type",
    "bad/movie.gif": "unsupported_type",
    "bad/iphone.heic": "unsupported_type",
    "bad/orphan.txt": "unsupported_type",
    "bad/really_jpeg.png": "extension_mismatch",
    "bad/really_png.jpg": "extension_mismatch",
    "bad/truncated.jpg": "undecodable",
    "bad/truncated.png": "undecodable",
    "bad/garbled.png": "undecodable",
    "bad/truncated.webp": "header_unreadable",
    "bad/truncated.bmp": "undecodable",
    "bad/bomb.png": "decompression_bomb",
    "bad/bomb.gif": "decompression_bomb",
    "bad/icon.png": "too_small",
    "bad/boundary_127.gif": "too_small",
    "bad/pixel.gif": "too_small",
    "bad/panorama.png": "too_large",
    "bad/eicar.jpg": "antivirus",
    "bad/eicar_appended.jpg": "trailing_data",
    "bad/empty.jpg": "empty",
    "bad/broken_header.png": "header_unreadable",
    "bad/zip_after.jpg": "trailing_data",
    "bad/zip_after_multi_picture.jpg": "trailing_data",
    "bad/chunk_after_iend.png": "trailing_data",
    "bad/html_after.gif": "trailing_data",
    "bad/zip_after.webp": "trailing_data",
    "bad/zip_after.avif": "trailing_data",
    "bad/zip_after.tif": "trailing_data",
    "dupes.zip/a.jpg (copy 2)": "archive_duplicate_member",
    "bundle.zip/inside/empty.png": "empty",
    "bundle.zip/inside/eicar.jpg": "antivirus",
    "nested.zip/inner.zip": "unsupported_type",
    "escape.zip/../../outside.jpg": "archive_unsafe_path",
    "mixed.zip/safe_1.jpg": "archive_refused",
    "mixed.zip/safe_2.jpg": "archive_refused",
    "mixed.zip//etc/cron.d/evil": "archive_unsafe_path",
    "links.tar/innocent.jpg": "archive_link",
    "links.tar/kept_back.jpg": "archive_refused",
    "bomb.zip/zeros.png": "archive_bomb",
    "fifo.tar/pipe.jpg": "archive_special_file",
    "gzip_bomb.tgz/zeros.bin": "archive_refused",
}
"""Rejected samples and the reason each must get (archive members included)."""

ARCHIVES: dict[str, str | None] = {
    "bundle.zip": None, "dupes.zip": None, "nested.zip": None,
    "escape.zip": "archive_unsafe_path", "mixed.zip": "archive_unsafe_path", "links.tar": "archive_link",
    "bomb.zip": "archive_bomb", "corrupt.zip": "archive_corrupt", "gzip_bomb.tgz": "archive_bomb",
    "fifo.tar": "archive_special_file",
}

SIDECARS: dict[str, str | None] = {
    "good/rgb.txt": None,
    "good/rgba.txt": None,
    NFC_CAPTION: None,
    "dupes/z_original.txt": None,
    "bundle.zip/inside/photo_a.txt": None,
    "good/infected_caption.txt": "antivirus",
    "good/empty_caption.txt": "empty",
    "good/blank_caption.txt": "caption_empty",
    "good/latin1_caption.txt": "caption_not_utf8",
    "good/huge_caption.txt": "caption_too_large",
    "good/binary_caption.txt": "caption_not_text",
}

LOCAL_ONLY = {"bad/link.png": "not_regular_file", "bad/pipe.png": "not_regular_file"}
S3_ONLY_GOOD = {"prefix/x": "filename", "prefix/x/y.jpg": "filename"}
S3_ONLY_TRAPS = {"odd/../escape.jpg": "unsafe_name", "odd//double.jpg": "unsafe_name"}


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zip_bytes(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return out.getvalue()


def tar_bytes(members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                archive.addfile(info, io.BytesIO(member[1]))
    return out.getvalue()


def special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _modes(files: dict[str, bytes]) -> None:
    """Every image mode a phone, a design tool or a scanner writes."""
    base = photo(20, (300, 260))
    files["good/grey.png"] = encoded(photo(21, (300, 260)).convert("L"), "PNG")
    files["good/palette.png"] = encoded(photo(22, (300, 260)).convert("P", palette=Image.Palette.ADAPTIVE), "PNG")
    transparent = photo(23, (300, 260)).convert("P", palette=Image.Palette.ADAPTIVE)
    files["good/palette_transparent.png"] = encoded(transparent, "PNG", transparency=0)
    files["good/bilevel.png"] = encoded(photo(24, (300, 260)).convert("1"), "PNG")
    ramp = (np.linspace(0, 65535, 300 * 260).reshape(260, 300)).astype(np.uint16)
    files["good/deep16.png"] = encoded(Image.fromarray(ramp), "PNG")
    files["good/deep16.tif"] = encoded(Image.fromarray(ramp[::-1].copy()), "TIFF")
    grey_alpha = photo(25, (300, 260)).convert("LA")
    files["good/grey_alpha.png"] = encoded(grey_alpha, "PNG")
    rgba = photo(26, (300, 260)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((300, 260)))
    files["good/rgba.png"] = encoded(rgba, "PNG")
    files["good/cmyk.jpg"] = encoded(photo(27, (300, 260)).convert("CMYK"), "JPEG", quality=92)
    files["good/cmyk.tif"] = encoded(photo(28, (300, 260)).convert("CMYK"), "TIFF")
    files["good/big.gif"] = encoded(photo(29, (400, 300)), "GIF")
    files["good/boundary_128.gif"] = encoded(photo(30, (128, 200)), "GIF")
    frames = [photo(31, (200, 200)), photo(32, (200, 200))]
    files["good/animated.gif"] = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    files["good/photo.avif"] = encoded(photo(33, (300, 260)), "AVIF", quality=80)
    files["good/lossless.webp"] = encoded(photo(34, (300, 260)), "WEBP", lossless=True)
    files["good/photo.bmp"] = encoded(photo(35, (300, 260)), "BMP")
    # a multi-picture JPEG (MPF, as stereo cameras and Ultra HDR gain-map photos write): its second picture
    # follows the first one's end, listed in the index, so it is not trailing data
    files["good/multi_picture.jpg"] = encoded(photo(36, (300, 260)), "MPO", save_all=True,
                                              append_images=[photo(37, (300, 260))])
    files["good/rgb.jpg"] = jpeg_bytes(base)
    files["good/rgb.txt"] = b"coloured blobs, sks style\n"
    files["good/rgba.txt"] = b"a half-transparent picture, sks style\n"


def _names(files: dict[str, bytes]) -> None:
    """Good images whose names are odd: newlines, tabs, long, Unicode-normalised two ways."""
    files["good/with space ü\nnewline.jpg"] = jpeg_bytes(photo(40))
    files["good/tab\tname.jpg"] = jpeg_bytes(photo(41))
    files["good/" + "long" * 50 + ".jpg"] = jpeg_bytes(photo(42))
    files[NFD_NAME] = jpeg_bytes(photo(43))
    files[NFC_CAPTION] = "un café, sks style\n".encode()
    files[unicodedata.normalize("NFC", "good/né.jpg")] = jpeg_bytes(photo(44))
    files[unicodedata.normalize("NFD", "good/né.jpg")] = jpeg_bytes(photo(45))


def _captions(files: dict[str, bytes]) -> None:
    """Good images whose caption files are not usable: each falls back to its file name."""
    for i, name in enumerate(["infected", "empty", "blank", "latin1", "huge", "binary"]):
        files[f"good/{name}_caption.jpg"] = jpeg_bytes(photo(50 + i))
    files["good/infected_caption.txt"] = EICAR
    files["good/empty_caption.txt"] = b""
    files["good/blank_caption.txt"] = b" \n\t \n"
    files["good/latin1_caption.txt"] = "crème brûlée, sks".encode("latin-1")
    files["good/huge_caption.txt"] = b"word " * 20_000
    files["good/binary_caption.txt"] = b"sks style\x00\x01\x02 and more"


def _duplicates(files: dict[str, bytes]) -> None:
    """Of duplicates the lossless copy wins over a re-compressed one, then the larger one."""
    original = photo(60, (320, 288))
    files["dupes/z_original.png"] = encoded(original, "PNG")
    files["dupes/z_original.txt"] = b"the original, sks style\n"
    files["dupes/a_recompressed.jpg"] = jpeg_bytes(original, quality=70)
    files["more/copy_of_rgb.jpg"] = files["good/rgb.jpg"]
    files["more/resaved_low_quality.jpg"] = jpeg_bytes(Image.open(io.BytesIO(files["good/rgb.jpg"])), quality=40)
    large = photo(61, (400, 360))
    files["dupes/b_large.png"] = encoded(large, "PNG")
    files["dupes/small_copy.png"] = encoded(large.resize((200, 180), Image.Resampling.LANCZOS), "PNG")


def _broken(files: dict[str, bytes]) -> None:
    """Files that are not images, lie about what they are, or are damaged."""
    files["bad/elf.png"] = b"\x7fELF\x02\x01\x01" + bytes(200)
    files["bad/windows.jpg"] = b"MZ\x90\x00\x03" + bytes(300)
    files["bad/document.pdf"] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n"
    files["bad/page.png"] = b"<html><body><img src=x onerror=alert(1)></body></html>\n"
    files["bad/movie.gif"] = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(200)
    files["bad/iphone.heic"] = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)
    files["bad/orphan.txt"] = b"remember to crop the cat\n"
    files["bad/really_jpeg.png"] = jpeg_bytes(photo(70))
    files["bad/really_png.jpg"] = encoded(photo(71), "PNG")
    files["bad/truncated.jpg"] = jpeg_bytes(photo(72))[:2500]
    png = encoded(photo(73), "PNG")
    files["bad/truncated.png"] = png[: len(png) // 2]
    start = png.index(b"IDAT") + 40
    files["bad/garbled.png"] = png[:start] + bytes(200) + png[start + 200:]
    webp = encoded(photo(74), "WEBP")
    files["bad/truncated.webp"] = webp[: len(webp) // 2]
    bmp = encoded(photo(75), "BMP")
    files["bad/truncated.bmp"] = bmp[: len(bmp) // 2]
    files["bad/bomb.png"] = png_with_size(30_000, 30_000)
    tiny_gif = encoded(Image.new("P", (1, 1)), "GIF")
    files["bad/bomb.gif"] = tiny_gif[:6] + struct.pack("<HH", 60_000, 60_000) + tiny_gif[10:]  # a huge canvas
    files["bad/icon.png"] = encoded(photo(76, (32, 32)), "PNG")
    files["bad/boundary_127.gif"] = encoded(photo(77, (127, 200)), "GIF")
    files["bad/pixel.gif"] = encoded(Image.new("P", (1, 1)), "GIF")
    files["bad/panorama.png"] = encoded(Image.new("1", (5000, 300)), "PNG")
    files["bad/eicar.jpg"] = EICAR
    files["bad/eicar_appended.jpg"] = jpeg_bytes(photo(78)) + EICAR
    multi = encoded(photo(79, (300, 260)), "MPO", save_all=True, append_images=[photo(85, (300, 260))])
    files["bad/zip_after_multi_picture.jpg"] = multi + zip_bytes([("x.sh", b"echo owned\n")])
    files["bad/empty.jpg"] = b""
    files["bad/broken_header.png"] = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + b"\xff" * 30


def _trailing(files: dict[str, bytes]) -> None:
    """Polyglots: a valid image with something after its end."""
    payload = zip_bytes([("payload.sh", b"#!/bin/sh\necho owned\n")])
    files["bad/zip_after.jpg"] = jpeg_bytes(photo(80)) + payload
    files["bad/chunk_after_iend.png"] = encoded(photo(81), "PNG") + png_chunk(b"tEXt", b"hidden\x00payload")
    files["bad/html_after.gif"] = encoded(photo(82), "GIF") + b"<script>alert(1)</script>"
    files["bad/zip_after.webp"] = encoded(photo(83), "WEBP") + payload
    files["bad/zip_after.avif"] = encoded(photo(84), "AVIF") + payload
    files["bad/zip_after.tif"] = encoded(photo(86), "TIFF", compression="tiff_lzw") + payload


def _archives(files: dict[str, bytes]) -> None:
    files["bundle.zip"] = zip_bytes([
        ("inside/photo_a.jpg", jpeg_bytes(photo(90))), ("inside/photo_a.txt", b"from the archive, sks style\n"),
        ("inside/photo_b.jpg", jpeg_bytes(photo(91))), ("inside/empty.png", b""), ("inside/eicar.jpg", EICAR)])
    files["dupes.zip"] = zip_bytes([("a.jpg", jpeg_bytes(photo(92))), ("a.jpg", jpeg_bytes(photo(93)))])
    files["nested.zip"] = zip_bytes([("inner.zip", zip_bytes([("deep.jpg", jpeg_bytes(photo(96)))]))])
    files["escape.zip"] = zip_bytes([("../../outside.jpg", jpeg_bytes(photo(97)))])
    files["mixed.zip"] = zip_bytes([("safe_1.jpg", jpeg_bytes(photo(98))), ("safe_2.jpg", jpeg_bytes(photo(99))),
                                    ("/etc/cron.d/evil", b"* * * * * root sh\n")])
    files["links.tar"] = tar_bytes([special("innocent.jpg", tarfile.SYMTYPE, "/etc/shadow"),
                                    ("kept_back.jpg", jpeg_bytes(photo(100)))])
    files["fifo.tar"] = tar_bytes([special("pipe.jpg", tarfile.FIFOTYPE)])
    files["bomb.zip"] = zip_bytes([("zeros.png", bytes(30 << 20))], zipfile.ZIP_DEFLATED)
    files["corrupt.zip"] = b"PK\x03\x04" + b"\x00garbage" * 20
    files["gzip_bomb.tgz"] = tar_bytes([("zeros.bin", bytes(30 << 20))], "w:gz")


def build_traps() -> dict[str, bytes]:
    """Every file of the upload, by path (local-only and S3-only entries excluded)."""
    files: dict[str, bytes] = {}
    for part in (_modes, _names, _captions, _duplicates, _broken, _trailing, _archives):
        part(files)
    return files


def write_local(root: Path, files: dict[str, bytes]) -> Path:
    for relpath, data in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "bad/link.png").symlink_to("/etc/hostname")
    os.mkfifo(root / "bad/pipe.png")
    return root
