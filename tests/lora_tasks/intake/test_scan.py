"""Scanning: what each file really is, from local folders and S3, without touching the source."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

import boto3
import pytest

from lora_tasks.errors import DatasetError
from lora_tasks.intake.antivirus import ClamScan, NoAntivirus
from lora_tasks.intake.filter import filter_manifest
from lora_tasks.intake.manifest import read_rows
from lora_tasks.intake.scan import main, scan_dataset
from lora_tasks.spec.schema import FilterSection
from tests.lora_tasks.intake.corpus import FILTER_OPTIONS, WEIRD_NAME, jpeg_bytes, photo


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file's content hash, mode and mtime: the source must come out of a scan unchanged."""
    out = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
        out[path.relative_to(root).as_posix()] = (digest, info.st_mode, info.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def scanned(image_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    before = snapshot(image_corpus)
    out = tmp_path_factory.mktemp("scan") / "manifest.jsonl"
    rows = {r.path: r for r in scan_dataset(str(image_corpus), out, workers=2)}
    return {"rows": rows, "out": out, "before": before}


def test_rows_describe_content_not_names(scanned: dict, image_corpus: Path) -> None:
    rows = scanned["rows"]
    good = rows["good/photo_0.jpg"]
    assert good.sha256 == hashlib.sha256((image_corpus / "good/photo_0.jpg").read_bytes()).hexdigest()
    assert (good.type, good.mime, good.width, good.height, good.mode) == ("jpg", "image/jpeg", 320, 288, "RGB")
    assert good.sidecar == "good/photo_0.txt" and good.caption is None  # read by the filter, after the antivirus
    assert rows["good/photo_0.txt"].role == "sidecar"
    assert rows["bad/setup.png"].type == "elf"
    assert rows["bad/actually_jpeg.png"].type == "jpg"
    assert rows["bad/eicar.jpg"].type == "text"
    assert (rows["bad/bomb.png"].width, rows["bad/bomb.png"].height) == (30_000, 30_000)
    assert rows["bad/broken_header.png"].error == "header_unreadable"
    assert rows["bad/link.png"].error == rows["bad/pipe.png"].error == "not_regular_file"
    assert rows[f"good/{WEIRD_NAME}"].width == 320


def test_archives_are_expanded_into_the_stage_folder(scanned: dict) -> None:
    rows, stage = scanned["rows"], scanned["out"].parent
    member = rows["bundle.zip/inside/photo_5.jpg"]
    assert member.source.endswith("bundle.zip#inside/photo_5.jpg")
    assert Path(member.local_path).is_relative_to(stage / "expanded")  # under a numbered name, never its own
    assert Path(member.local_path).read_bytes() == jpeg_bytes(photo(5))
    assert rows["bundle.zip"].role == "archive" and rows["bundle.zip"].error is None
    assert rows["escape.zip"].error == "archive_unsafe_path"
    assert rows["bomb.zip"].error == "archive_bomb"
    assert rows["links.tar"].error == "archive_link"
    assert rows["nested.zip/inner.zip"].type == "zip"  # listed, not expanded again
    assert not (stage / "expanded" / "escape.zip").exists()


def test_source_is_untouched_and_rerun_is_identical(scanned: dict, image_corpus: Path) -> None:
    assert snapshot(image_corpus) == scanned["before"]
    first = scanned["out"].read_bytes()
    scan_dataset(str(image_corpus), scanned["out"], workers=1)
    assert scanned["out"].read_bytes() == first
    assert snapshot(image_corpus) == scanned["before"]


@pytest.mark.parametrize(
    ("data", "out", "message"),
    [
        ("data", "data/work/manifest.jsonl", "inside the dataset"),
        ("data", "data/manifest.jsonl", "inside the dataset"),
        ("stage/expanded/data", "stage/manifest.jsonl", "which this stage replaces"),
    ],
)
def test_the_stage_folder_stays_out_of_the_dataset(tmp_path: Path, data: str, out: str, message: str) -> None:
    root = tmp_path / data
    (root / "expanded").mkdir(parents=True)
    photo(0).save(root / "expanded" / "keep.jpg")  # a user's folder that happens to share a stage's name
    before = snapshot(root)
    with pytest.raises(DatasetError, match=message):
        scan_dataset(str(root), tmp_path / out)
    assert snapshot(root) == before


def test_a_manifest_beside_the_dataset_is_fine(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    photo(0).save(tmp_path / "data" / "a.jpg")
    assert [r.path for r in scan_dataset(str(tmp_path / "data"), tmp_path / "manifest.jsonl")] == ["a.jpg"]


def test_file_uri_and_cli(image_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([image_corpus.as_uri(), "--out", str(tmp_path / "m.jsonl"), "--workers", "1"]) == 0
    assert len(read_rows(tmp_path / "m.jsonl")) > 20


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: (root / "empty").mkdir(exist_ok=True) or root / "empty", "is empty"),
        (lambda root: "ftp://host/data", "unsupported scheme"),
    ],
)
def test_unusable_datasets_fail_clearly(tmp_path: Path, make, expected: str) -> None:
    uri = str(make(tmp_path))
    with pytest.raises(DatasetError, match=expected):
        scan_dataset(uri, tmp_path / "out" / "manifest.jsonl")
    assert main([uri, "--out", str(tmp_path / "o.jsonl")]) == 2


def _scan_as_nobody(root: str, out: str) -> None:
    os.setgid(65534)
    os.setuid(65534)
    scan_dataset(root, Path(out), workers=1)


def test_unreadable_file_is_recorded_not_fatal(tmp_path: Path) -> None:
    """As root every file is readable, so the scan runs in a child that drops to 'nobody'."""
    base = Path(tempfile.mkdtemp(prefix="unreadable-"))
    try:
        base.chmod(0o777)
        (base / "data").mkdir()
        (base / "data" / "ok.jpg").write_bytes(jpeg_bytes(photo(1)))
        (base / "data" / "secret.jpg").write_bytes(jpeg_bytes(photo(2)))
        (base / "data" / "secret.jpg").chmod(0o000)
        (base / "data" / "locked").mkdir()
        (base / "data" / "locked").chmod(0o000)
        out = base / "out" / "manifest.jsonl"
        (base / "out").mkdir()
        (base / "out").chmod(0o777)  # mkdir's mode is masked by the umask
        if os.geteuid() == 0:
            child = multiprocessing.get_context("fork").Process(target=_scan_as_nobody, args=(str(base / "data"),
                                                                                               str(out)))
            child.start()
            child.join()
            assert child.exitcode == 0
        else:
            scan_dataset(str(base / "data"), out, workers=1)
        rows = {r.path: r for r in read_rows(out)}
        assert rows["secret.jpg"].error == "unreadable" and "Permission denied" in rows["secret.jpg"].error_detail
        assert rows["locked"].error == "unreadable"
        assert rows["ok.jpg"].sha256 and rows["ok.jpg"].error is None
        result = filter_manifest(out, base / "filter", FilterSection(**FILTER_OPTIONS), antivirus=NoAntivirus())
        rejected = {r.path: r for r in result.rejected}
        assert [r.path for r in result.kept] == ["ok.jpg"]
        assert rejected["secret.jpg"].reason == rejected["locked"].reason == "unreadable"
        assert "secret.jpg" in rejected["secret.jpg"].message
    finally:
        for path in base.rglob("*"):
            path.chmod(0o755)
        shutil.rmtree(base)


@pytest.mark.slow
def test_ten_thousand_tiny_files(tmp_path: Path, clamav_database: Path) -> None:
    root = tmp_path / "many"
    tiny = jpeg_bytes(photo(0, (8, 8)))
    for i in range(10_000):
        folder = root / f"{i // 1000:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:05d}.jpg").write_bytes(tiny + i.to_bytes(4, "big"))
    rows = scan_dataset(str(root), tmp_path / "scan" / "manifest.jsonl", workers=2)
    assert len(rows) == 10_000
    assert all(r.type == "jpg" and r.width == 8 for r in rows)
    result = filter_manifest(tmp_path / "scan" / "manifest.jsonl", tmp_path / "filter", FilterSection(), workers=2,
                             antivirus=ClamScan(clamav_database))
    assert result.kept == [] and result.summary["reasons"] == {"too_small": 10_000}


def test_s3_dataset_is_copied_into_the_stage(s3_endpoint: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORA_S3_ENDPOINT_URL", s3_endpoint)
    from lora_tasks.settings import platform_settings

    platform_settings.cache_clear()
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="uploads")
    photo_bytes = jpeg_bytes(photo(3))
    for key, body in {"tenant-a/cats/one.jpg": photo_bytes, "tenant-a/cats/one.txt": b"a cat",
                      "tenant-a/cats/sub/two.jpg": jpeg_bytes(photo(4)), "tenant-a/cats/../../escape.jpg": b"x",
                      "tenant-a/catsalike/not-mine.jpg": b"x", "tenant-a/cats/folder/": b""}.items():
        s3.put_object(Bucket="uploads", Key=key, Body=body)
    out = tmp_path / "scan" / "manifest.jsonl"
    try:
        rows = {r.path: r for r in scan_dataset("s3://uploads/tenant-a/cats", out, workers=1)}
        assert set(rows) == {"one.jpg", "one.txt", "sub/two.jpg", "../../escape.jpg"}
        assert rows["one.jpg"].source == "s3://uploads/tenant-a/cats/one.jpg"
        assert Path(rows["one.jpg"].local_path).read_bytes() == photo_bytes
        assert Path(rows["one.jpg"].local_path).is_relative_to(out.parent / "objects")
        assert rows["one.jpg"].sidecar == "one.txt" and rows["one.txt"].role == "sidecar"
        assert rows["../../escape.jpg"].error == "unsafe_name" and rows["../../escape.jpg"].local_path is None
        assert not (tmp_path / "escape.jpg").exists()
        with pytest.raises(DatasetError, match="does not exist"):
            scan_dataset("s3://no-such-bucket/x", out)
        with pytest.raises(DatasetError, match="holds no objects"):
            scan_dataset("s3://uploads/nothing-here", out)
    finally:
        platform_settings.cache_clear()
    assert json.loads(out.read_text().splitlines()[0])["path"] == "../../escape.jpg"


@pytest.mark.slow
def test_ten_thousand_s3_objects_some_empty(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing pages, parallel downloads, and a row with a reason for every object, empty ones included."""
    from concurrent.futures import ThreadPoolExecutor

    from lora_tasks.settings import platform_settings
    from lora_tasks.stores.s3 import s3_client

    monkeypatch.setenv("LORA_S3_ENDPOINT_URL", s3_endpoint)
    platform_settings.cache_clear()
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket="many")
    tiny = jpeg_bytes(photo(0, (8, 8)))

    def put(i: int) -> None:
        client.put_object(Bucket="many", Key=f"up/{i // 1000:02d}/{i:05d}.jpg", Body=b"" if i % 100 == 0 else tiny)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(10_000)))
    try:
        rows = scan_dataset("s3://many/up", tmp_path / "scan" / "manifest.jsonl", workers=2)
        result = filter_manifest(tmp_path / "scan" / "manifest.jsonl", tmp_path / "filter", FilterSection(),
                                 workers=2, antivirus=NoAntivirus())
    finally:
        platform_settings.cache_clear()
    assert len(rows) == 10_000
    assert result.summary["reasons"] == {"empty": 100, "too_small": 9_900}
    empty = next(r for r in result.rejected if r.reason == "empty")
    assert "empty file (0 bytes)" in str(empty.message)


def test_keep_safe_members_keeps_an_archives_safe_members(tmp_path: Path) -> None:
    import zipfile

    data = tmp_path / "data"
    data.mkdir()
    with zipfile.ZipFile(data / "mixed.zip", "w") as archive:
        archive.writestr("safe.jpg", jpeg_bytes(photo(1)))
        archive.writestr("../escape.jpg", jpeg_bytes(photo(2)))
    for policy, kept in (("reject_archive", set()), ("keep_safe_members", {"mixed.zip/safe.jpg"})):
        rows = scan_dataset(str(data), tmp_path / policy / "manifest.jsonl", workers=1, archives=policy)
        result = filter_manifest(tmp_path / policy / "manifest.jsonl", tmp_path / policy / "filter",
                                 FilterSection(**FILTER_OPTIONS), workers=1, antivirus=NoAntivirus())
        assert {r.path for r in result.kept} == kept
        reasons = {r.path: r.reason for r in result.rejected}
        assert reasons["mixed.zip/../escape.jpg"] == "archive_unsafe_path"  # reported lost either way
        assert reasons.get("mixed.zip/safe.jpg") == (None if kept else "archive_refused")
        assert (reasons.get("mixed.zip") is None) == bool(kept)
        assert len(rows) == 3
