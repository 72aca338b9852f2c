"""Property-based: any file tree or S3 key set goes through scan -> filter -> caption -> check with every
input accounted for (kept, or rejected with a reason) and nothing raised but a ``LoraTaskError``."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import unicodedata
import warnings
import zipfile
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from lora_tasks.errors import DatasetError
from lora_tasks.intake.antivirus import NoAntivirus
from lora_tasks.intake.caption import caption_images
from lora_tasks.intake.check import check_samples
from lora_tasks.intake.filter import filter_manifest
from lora_tasks.intake.manifest import read_rows
from lora_tasks.intake.scan import scan_dataset
from lora_tasks.spec.schema import CaptionSection, ChecksSection, FilterSection
from tests.lora_tasks.intake.corpus import EICAR, jpeg_bytes, photo


def _image(mode: str, fmt: str, seed: int) -> bytes:
    out = io.BytesIO()
    photo(seed, (48, 40)).convert(mode).save(out, fmt)
    return out.getvalue()


CONTENTS = {
    "jpeg": jpeg_bytes(photo(1, (48, 40))),
    "jpeg_other": jpeg_bytes(photo(2, (48, 40))),
    "png_palette": _image("P", "PNG", 3),
    "png_alpha": _image("RGBA", "PNG", 4),
    "gif": _image("P", "GIF", 5),
    "empty": b"",
    "text": b"a caption, sks style\n",
    "latin1": "crème".encode("latin-1"),
    "binary": bytes(range(256)),
    "truncated": jpeg_bytes(photo(6, (48, 40)))[:300],
    "eicar": EICAR,
    "trailing": jpeg_bytes(photo(7, (48, 40))) + b"PK\x03\x04 appended",
}
SEGMENT_NAMES = ["a", "x", "y", "photo", "photo.jpg", "photo.txt", "é.jpg", unicodedata.normalize("NFD", "é.jpg"),
                 "Photo.JPG", "new\nline.png", "tab\t.txt", " lead", "trail ", ".hidden", "a.zip", "…"]
FILTER = FilterSection(min_side=16, max_side=4096)


def segments(alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    free = st.text(alphabet, min_size=1, max_size=12).filter(lambda s: s not in {".", ".."})
    return st.one_of(st.sampled_from(SEGMENT_NAMES), free)


def relpaths(alphabet: st.SearchStrategy[str], newlines: bool = True) -> st.SearchStrategy[str]:
    """Paths of one to three segments; moto's server refuses keys with a newline, which S3 itself stores."""
    paths = st.lists(segments(alphabet), min_size=1, max_size=3).map("/".join)
    return paths if newlines else paths.filter(lambda p: "\n" not in p)


def zipped(members: list[tuple[str, str]]) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w") as archive:
        warnings.simplefilter("ignore")  # duplicate member names are part of what is generated
        for name, kind in members:
            archive.writestr(name, CONTENTS[kind])
    return out.getvalue()


NOT_UTF8 = b"caf\xe9.jpg"
"""A Latin-1 file name, as old cameras and Windows zips write them: not UTF-8."""


def _damaged_zip() -> bytes:
    """A zip whose deflate stream is broken in the middle (zlib.error while extracting)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("photo.jpg", CONTENTS["jpeg"] * 4)
    data = bytearray(out.getvalue())
    data[60:90] = bytes(30)
    return bytes(data)


def _latin1_tar() -> bytes:
    """A tar whose member name is Latin-1 bytes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as archive:
        info = tarfile.TarInfo("café.jpg")
        info.size = len(CONTENTS["jpeg"])
        archive.addfile(info, io.BytesIO(CONTENTS["jpeg"]))
    return out.getvalue()


CONTENTS["damaged_zip"] = _damaged_zip()
CONTENTS["latin1_tar"] = _latin1_tar()
KINDS = st.sampled_from(sorted(CONTENTS))
MEMBER_NAMES = st.one_of(relpaths(st.characters(codec="utf-8", exclude_characters="/\\\x00")),
                         st.sampled_from(["../up.jpg", "/abs.jpg", "a//b.jpg", "dup.jpg"]))
ARCHIVE = st.lists(st.tuples(MEMBER_NAMES, KINDS), min_size=1, max_size=5).map(zipped)
BODIES = st.one_of(KINDS.map(CONTENTS.__getitem__), ARCHIVE)
LOCAL_NAME = st.characters(codec="utf-8", exclude_characters="/\x00", exclude_categories=["Cs"])
S3_NAME = st.characters(codec="utf-8", exclude_characters="/\x00\n\r", exclude_categories=["Cs", "Cc"])


def run_stages(uri: str, work: Path, inputs: set[str]) -> None:
    """Every stage; nothing may go wrong but a dataset holding no objects at all, and every input must be
    accounted for: a manifest row for each (what it holds, if an archive), then kept or rejected."""
    try:
        rows = scan_dataset(uri, work / "scan" / "manifest.jsonl", workers=1)
    except DatasetError as exc:
        assert "holds no objects" in str(exc) and not inputs, exc
        return
    result = filter_manifest(work / "scan" / "manifest.jsonl", work / "filter", FILTER, "image", workers=1,
                             antivirus=NoAntivirus())
    captioned = caption_images(work / "filter" / "kept.jsonl", work / "caption", CaptionSection(), "sks")
    report = check_samples(captioned, result.rejected, ChecksSection(min_images=1), "image", work / "check")
    archives = [r.source for r in rows if r.role == "archive"]
    members = {r.path for r in rows if any(r.source.startswith(f"{a}#") for a in archives)}
    assert {r.path for r in rows} - members == inputs
    assert len({r.path for r in rows}) == len(rows)  # one row per path, archive members included
    samples = [r for r in rows if r.role == "sample"]
    kept, rejected = {r.path for r in result.kept}, {r.path for r in result.rejected}
    assert {r.path for r in samples} == kept | (rejected & {r.path for r in samples})
    assert all(r.reason and r.message for r in result.rejected)
    assert {r.path for r in captioned} == kept and all(r.caption for r in captioned)
    assert result.summary["kept"] + result.summary["rejected"] == result.summary["samples"] == len(samples)
    assert report.findings
    assert read_rows(work / "filter" / "kept.jsonl") == result.kept


def without_clashes(files: dict[str, bytes]) -> dict[str, bytes]:
    """A folder cannot hold a file and a folder of one name: keep the first of such pairs."""
    kept: dict[str, bytes] = {}
    for path in sorted(files):
        parents = {str(p) for p in PurePosixPath(path).parents}
        if parents & set(kept) or any(other.startswith(f"{path}/") for other in kept):
            continue
        kept[path] = files[path]
    return kept


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(relpaths(LOCAL_NAME), BODIES, min_size=1, max_size=8))
@example({"é.jpg": CONTENTS["jpeg"], unicodedata.normalize("NFD", "é.jpg"): CONTENTS["jpeg_other"],
          unicodedata.normalize("NFD", "é.txt"): CONTENTS["text"]})
@example({"photo.jpg": CONTENTS["jpeg"], "photo.txt": CONTENTS["latin1"], "a.zip": zipped([("dup.jpg", "jpeg"),
          ("dup.jpg", "gif"), ("../up.jpg", "jpeg")])})
@example({"a": zipped([("../up.jpg", "binary"), ("../up.jpg", "binary")])})  # two unsafe members of one name
def test_any_file_tree(files: dict[str, bytes]) -> None:
    root = Path(tempfile.mkdtemp(prefix="tree-"))
    try:
        written = without_clashes(files)
        for relpath, data in written.items():
            path = root / "data" / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (root / "data").mkdir(exist_ok=True)
        with open(os.fsencode(root / "data") + b"/" + NOT_UTF8, "wb") as odd:  # noqa: PTH123 - a bytes name
            odd.write(CONTENTS["jpeg"])
        run_stages(str(root / "data"), root / "work", set(written) | {"caf\\xe9.jpg"})
    finally:
        shutil.rmtree(root)


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str) -> str:
    from lora_tasks.settings import platform_settings
    from lora_tasks.stores.s3 import s3_client

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LORA_S3_ENDPOINT_URL", s3_endpoint)
        platform_settings.cache_clear()
        s3_client(s3_endpoint).create_bucket(Bucket="properties")
        yield s3_endpoint
    platform_settings.cache_clear()


COUNTER = iter(range(10**9))
ODD_KEYS = ["x", "x/y", "x/y/z", "a//b", "../c", "d/"]
"""A key that is also a prefix, keys that could escape a folder, a folder marker."""


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.one_of(relpaths(S3_NAME, newlines=False), st.sampled_from(ODD_KEYS)), BODIES, min_size=1,
                       max_size=8))
@example({"x": CONTENTS["jpeg"], "x/y": CONTENTS["jpeg_other"], "x/y.txt": CONTENTS["text"], "e/": b"marker"})
def test_any_s3_key_set(bucket: str, files: dict[str, bytes]) -> None:
    from lora_tasks.stores.s3 import s3_client

    client = s3_client(bucket)
    prefix = f"run-{next(COUNTER)}"
    for key, data in files.items():
        client.put_object(Bucket="properties", Key=f"{prefix}/{key}", Body=data)
    work = Path(tempfile.mkdtemp(prefix="s3-"))
    markers = {key for key, data in files.items() if key.endswith("/") and not data}  # folders, not data
    try:
        run_stages(f"s3://properties/{prefix}", work, set(files) - markers)
    finally:
        shutil.rmtree(work)


def test_an_s3_prefix_holding_x_and_x_slash_y_keeps_both(bucket: str, tmp_path: Path) -> None:
    """The layout that crashed scan with FileExistsError: both objects are downloaded and kept."""
    from lora_tasks.stores.s3 import s3_client

    client = s3_client(bucket)
    for key, seed in (("layout/x", 10), ("layout/x/y", 11), ("layout/x/y/z.jpg", 12)):
        client.put_object(Bucket="properties", Key=key, Body=jpeg_bytes(photo(seed, (64, 64))))
    scan_dataset("s3://properties/layout", tmp_path / "scan" / "manifest.jsonl", workers=1)
    result = filter_manifest(tmp_path / "scan" / "manifest.jsonl", tmp_path / "filter", FILTER, workers=1,
                             antivirus=NoAntivirus())
    assert {r.path for r in result.kept} == {"x", "x/y", "x/y/z.jpg"}
    assert Image.open(result.kept[0].local_path).size == (64, 64)
