"""A generated upload holding one of every kind of bad file, next to good ones.

``EXPECTED`` maps each sample's path to the reason the filter must give (None: kept).
Built fresh per test session; nothing is downloaded.
"""

from __future__ import annotations

import io
import os
import random
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_MD5 = "44d88612fea8a8f36de82e1278abb02f"
FILTER_OPTIONS = {"min_side": 256, "max_side": 8192, "max_pixels": 50_000_000, "near_duplicate_distance": 6}
WEIRD_NAME = "with space ü\nnewline.jpg"

EXPECTED: dict[str, str | None] = {
    "good/photo_0.jpg": "exact_duplicate",
    "good/photo_1.jpg": None,
    "good/photo_2.png": None,
    "good/photo_3.jpg": None,
    "good/photo_4.webp": None,
    f"good/{WEIRD_NAME}": None,
    "bundle.zip/inside/photo_5.jpg": None,
    "bundle.zip/inside/photo_6.jpg": None,
    "bad/copy_of_photo_0.jpg": None,
    "bad/photo_1_resaved.jpg": "near_duplicate",
    "bad/setup.png": "unsupported_type",
    "bad/actually_jpeg.png": "extension_mismatch",
    "bad/truncated.jpg": "undecodable",
    "bad/bomb.png": "decompression_bomb",
    "bad/icon.png": "too_small",
    "bad/panorama.png": "too_large",
    "bad/eicar.jpg": "antivirus",
    "bad/notes.txt": "unsupported_type",
    "bad/broken_header.png": "header_unreadable",
    "bad/link.png": "not_regular_file",
    "bad/pipe.png": "not_regular_file",
    "nested.zip/inner.zip": "unsupported_type",
    "red.jpg": "nsfw",
}
ARCHIVE_REASONS = {
    "escape.zip": "archive_unsafe_path",
    "bomb.zip": "archive_bomb",
    "links.tar": "archive_link",
}


def photo(seed: int, size: tuple[int, int] = (320, 288)) -> Image.Image:
    """A distinct picture per seed: gradient, blobs and lines, so perceptual hashes differ."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        r = rng.randrange(20, 90)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randrange(256) for _ in range(3)))
    for _ in range(6):
        draw.line([rng.randrange(size[0]), 0, rng.randrange(size[0]), size[1]], fill=(0, 0, 0), width=5)
    return image


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def png_with_size(width: int, height: int) -> bytes:
    """A valid PNG header declaring a huge size, with a tiny (incomplete) body: a bomb's signature."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + \
        chunk(b"IEND", b"")


def write(root: Path, relpath: str, data: bytes) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def build_image_corpus(root: Path) -> Path:
    for i in range(4):
        image = photo(i)
        if i == 2:
            buffer = io.BytesIO()
            image.save(buffer, "PNG")
            write(root, "good/photo_2.png", buffer.getvalue())
        else:
            write(root, f"good/photo_{i}.jpg", jpeg_bytes(image))
    webp = io.BytesIO()
    photo(4).save(webp, "WEBP")
    write(root, "good/photo_4.webp", webp.getvalue())
    write(root, f"good/{WEIRD_NAME}", jpeg_bytes(photo(7)))
    write(root, "good/photo_0.txt", b"a photo of coloured blobs, sks style\n")

    write(root, "bad/copy_of_photo_0.jpg", (root / "good/photo_0.jpg").read_bytes())
    write(root, "bad/photo_1_resaved.jpg", jpeg_bytes(photo(1).resize((300, 270)), quality=60))
    write(root, "bad/setup.png", b"\x7fELF\x02\x01\x01" + bytes(200))
    write(root, "bad/actually_jpeg.png", jpeg_bytes(photo(8)))
    write(root, "bad/truncated.jpg", jpeg_bytes(photo(9))[:2500])
    write(root, "bad/bomb.png", png_with_size(30_000, 30_000))
    icon = io.BytesIO()
    photo(10, (32, 32)).save(icon, "PNG")
    write(root, "bad/icon.png", icon.getvalue())
    panorama = io.BytesIO()
    Image.new("1", (9000, 300)).save(panorama, "PNG")
    write(root, "bad/panorama.png", panorama.getvalue())
    write(root, "bad/eicar.jpg", EICAR)
    write(root, "bad/notes.txt", b"remember to crop the cat\n")
    write(root, "bad/broken_header.png", b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + b"\xff" * 30)
    (root / "bad/link.png").symlink_to("/etc/hostname")
    os.mkfifo(root / "bad/pipe.png")
    red = io.BytesIO()
    Image.new("RGB", (300, 300), (255, 0, 0)).save(red, "JPEG")  # what the test's NSFW detector flags
    write(root, "red.jpg", red.getvalue())
    _archives(root)
    return root


def _archives(root: Path) -> None:
    with zipfile.ZipFile(root / "bundle.zip", "w") as bundle:
        bundle.writestr("inside/photo_5.jpg", jpeg_bytes(photo(5)))
        bundle.writestr("inside/photo_6.jpg", jpeg_bytes(photo(6)))
    with zipfile.ZipFile(root / "escape.zip", "w") as escape:
        escape.writestr("../../outside.jpg", jpeg_bytes(photo(11)))
    with zipfile.ZipFile(root / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as bomb:
        bomb.writestr("zeros.png", bytes(50 << 20))
    with tarfile.open(root / "links.tar", "w") as links:
        info = tarfile.TarInfo("innocent.jpg")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
        links.addfile(info)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zipped:
        zipped.writestr("deep.jpg", jpeg_bytes(photo(12)))
    with zipfile.ZipFile(root / "nested.zip", "w") as nested:
        nested.writestr("inner.zip", inner.getvalue())


TEXT_EXPECTED: dict[str, str | None] = {
    "story_a.txt": None,
    "story_b.txt": None,
    "story_a_copy.txt": "exact_duplicate",
    "story_a_edited.txt": "near_duplicate",
    "blank.txt": "empty",
    "latin1.txt": "not_utf8",
    "too_long.txt": "too_long",
    "picture.png": "unsupported_type",
}


def build_text_corpus(root: Path) -> Path:
    rng = random.Random(3)
    vocabulary = [f"word{i}" for i in range(400)]
    story_a = " ".join(rng.choice(vocabulary) for _ in range(300))
    write(root, "story_a.txt", story_a.encode())
    write(root, "story_b.txt", " ".join(rng.choice(vocabulary) for _ in range(300)).encode())
    write(root, "story_a_copy.txt", story_a.encode())
    edited = story_a.split()
    edited[150] = "changed"
    write(root, "story_a_edited.txt", " ".join(edited).encode())
    write(root, "blank.txt", b"  \n\t\n")
    write(root, "latin1.txt", "café crème brûlée".encode("latin-1"))
    write(root, "too_long.txt", ("long " * 3000).encode())
    write(root, "picture.png", jpeg_bytes(photo(1)))
    return root
