"""The hostile, messy upload of ``traps.py`` through scan -> filter -> caption -> check, from a folder
and from S3 (a moto server over HTTP): every trap refused with its reason, every good file kept with
its caption, the source untouched, a rerun identical, and nothing raised but a ``LoraTaskError``."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lora_tasks.errors import LoraTaskError
from lora_tasks.intake.antivirus import ClamScan
from lora_tasks.intake.caption import caption_images
from lora_tasks.intake.check import check_samples
from lora_tasks.intake.filter import filter_manifest
from lora_tasks.intake.manifest import ManifestRow, read_rows
from lora_tasks.intake.scan import scan_dataset
from lora_tasks.spec.schema import CaptionSection, ChecksSection, FilterSection
from tests.lora_tasks.intake.corpus import jpeg_bytes, photo
from tests.lora_tasks.intake.traps import (
    ARCHIVES,
    FILTER,
    GOOD,
    LOCAL_ONLY,
    S3_ONLY_GOOD,
    S3_ONLY_TRAPS,
    SIDECARS,
    TRAPS,
    build_traps,
    write_local,
)

OUTPUTS = ["scan/manifest.jsonl", "filter/kept.jsonl", "filter/rejected.jsonl", "filter/summary.json",
           "caption/captioned.jsonl", "check/report.json"]


def stage(call: Callable[[], Any]) -> Any:
    """Run a stage: whatever goes wrong must be a LoraTaskError, never a traceback of another kind."""
    try:
        return call()
    except Exception as exc:
        assert isinstance(exc, LoraTaskError), f"{type(exc).__name__}: {exc}"
        raise


def run_intake(uri: str, work: Path, database: Path) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stage that only warns about bad input has not handled it
        stage(lambda: scan_dataset(uri, work / "scan" / "manifest.jsonl", workers=2))
    result = stage(lambda: filter_manifest(work / "scan" / "manifest.jsonl", work / "filter", FilterSection(**FILTER),
                                           "image", workers=2, antivirus=ClamScan(database)))
    captioned = stage(lambda: caption_images(work / "filter" / "kept.jsonl", work / "caption", CaptionSection(),
                                             "sks"))
    report = stage(lambda: check_samples(captioned, result.rejected, ChecksSection(min_side=FILTER["min_side"]),
                                         "image", work / "check"))
    return {"manifest": read_rows(work / "scan" / "manifest.jsonl"), "kept": result.kept,
            "rejected": result.rejected, "summary": result.summary, "captioned": captioned, "report": report}


def snapshot_local(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every regular file under ``root`` (links and FIFOs are not read)."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink():
                out[path.relative_to(root).as_posix()] = (hashlib.sha256(path.read_bytes()).hexdigest(),
                                                          path.stat().st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate member name it is asked to write
        return build_traps()


@pytest.fixture(scope="module")
def local(files: dict[str, bytes], clamav_database: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = write_local(tmp_path_factory.mktemp("upload") / "traps", files)
    before = snapshot_local(root)
    work = tmp_path_factory.mktemp("work")
    first = run_intake(str(root), work, clamav_database)
    outputs = {name: (work / name).read_bytes() for name in OUTPUTS}
    rerun = run_intake(str(root), work, clamav_database)
    return {"run": first, "rerun": rerun, "outputs": outputs, "work": work, "before": before,
            "after": snapshot_local(root), "good": GOOD, "traps": {**TRAPS, **LOCAL_ONLY},
            "inputs": set(files) | set(LOCAL_ONLY)}


@pytest.fixture(scope="module")
def s3(files: dict[str, bytes], s3_endpoint: str, clamav_database: Path,
       tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch) -> dict:
    from lora_tasks.settings import platform_settings
    from lora_tasks.stores.s3 import s3_client

    monkeypatch_module.setenv("LORA_S3_ENDPOINT_URL", s3_endpoint)
    platform_settings.cache_clear()
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket="traps")
    # keys a file system cannot hold: one that is also a folder of another, and two that could escape
    # moto's server refuses a key holding a newline (S3 itself stores one): that name is tested from a folder
    files = {path: data for path, data in files.items() if "\n" not in path}
    s3_files = {**files, "prefix/x": jpeg_bytes(photo(200)), "prefix/x/y.jpg": jpeg_bytes(photo(201)),
                "odd/../escape.jpg": jpeg_bytes(photo(202)), "odd//double.jpg": jpeg_bytes(photo(203))}
    for key, data in s3_files.items():
        client.put_object(Bucket="traps", Key=f"upload/{key}", Body=data)

    def listing() -> dict[str, tuple[str, str]]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket="traps")
        return {o["Key"]: (o["ETag"], str(o["LastModified"])) for page in pages for o in page.get("Contents", [])}

    before = listing()
    work = tmp_path_factory.mktemp("work-s3")
    first = run_intake("s3://traps/upload", work, clamav_database)
    outputs = {name: (work / name).read_bytes() for name in OUTPUTS}
    rerun = run_intake("s3://traps/upload", work, clamav_database)
    yield {"run": first, "rerun": rerun, "outputs": outputs, "work": work, "before": before, "after": listing(),
           "good": {**{p: c for p, c in GOOD.items() if "\n" not in p}, **S3_ONLY_GOOD},
           "traps": {**TRAPS, **S3_ONLY_TRAPS}, "inputs": set(s3_files)}
    platform_settings.cache_clear()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(params=["local", "s3"])
def intake(request: pytest.FixtureRequest) -> dict:
    return request.getfixturevalue(request.param)


def by_path(rows: list[ManifestRow]) -> dict[str, ManifestRow]:
    return {r.path: r for r in rows}


def test_the_corpus_has_sixty_traps() -> None:
    refused_archives = [a for a, reason in ARCHIVES.items() if reason]
    unusable_captions = [c for c, reason in SIDECARS.items() if reason]
    assert len(TRAPS) + len(refused_archives) + len(unusable_captions) + len(LOCAL_ONLY) >= 60


def test_every_trap_is_refused_with_its_reason(intake: dict) -> None:
    rejected = by_path([r for r in intake["run"]["rejected"] if r.role == "sample"])
    work = str(intake["work"])
    wrong = {p: (rejected[p].reason if p in rejected else None) for p, r in intake["traps"].items()
             if p not in rejected or rejected[p].reason != r}
    assert not wrong, {p: (got, intake["traps"][p], rejected[p].message if got else None) for p, got in wrong.items()}
    for path in intake["traps"]:
        row = rejected[path]
        name = path.rstrip("/").split("/")[-1]
        assert name.split(" (copy")[0] in str(row.message) and len(str(row.message)) > len(path) + 15, row.message
        assert work not in str(row.message) and "\n" not in str(row.message).replace(path, ""), row.message
    assert set(rejected) == set(intake["traps"]), set(rejected) ^ set(intake["traps"])


def test_every_good_file_is_kept_with_its_caption(intake: dict) -> None:
    captioned = by_path(intake["run"]["captioned"])
    assert set(captioned) == set(intake["good"]), set(captioned) ^ set(intake["good"])
    for path, source in intake["good"].items():
        row = captioned[path]
        assert row.caption_source == source, (path, row.caption_source, row.caption_problem)
        assert row.caption and "sks" in row.caption, row.caption
    assert captioned["good/rgb.jpg"].caption == "coloured blobs, sks style"
    assert "café" in captioned[next(p for p in GOOD if "caf" in p)].caption  # an NFC caption for an NFD name


def test_unusable_captions_are_reported_and_fall_back(intake: dict) -> None:
    rejected = by_path([r for r in intake["run"]["rejected"] if r.role == "sidecar"])
    for path, reason in SIDECARS.items():
        if reason is None:
            assert path not in rejected, rejected.get(path)
        else:
            assert rejected[path].reason == reason, (path, rejected[path].reason)
            assert "falls back" in str(rejected[path].message) or "captioned by" in str(rejected[path].message)
    summary = intake["run"]["summary"]
    unusable = sum(r is not None for r in SIDECARS.values())
    assert summary["sidecar_captions"]["unusable"] == unusable
    assert summary["caption_fallbacks"] == unusable
    assert any(f"{unusable} kept image(s) fell back" in note for note in intake["run"]["report"].notes)
    kept = by_path(intake["run"]["captioned"])
    assert kept["good/latin1_caption.jpg"].caption_problem is not None


def test_archives_are_refused_whole_and_name_what_was_lost(intake: dict) -> None:
    rejected = by_path([r for r in intake["run"]["rejected"] if r.role == "archive"])
    for path, reason in ARCHIVES.items():
        if reason is None:
            assert path not in rejected, rejected[path].message
        else:
            assert rejected[path].reason == reason, (path, rejected[path].reason)
            assert "not expanded" in str(rejected[path].message)
    lost = by_path(intake["run"]["rejected"])["mixed.zip/safe_1.jpg"]
    assert "mixed.zip" in str(lost.message) and "refused" in str(lost.message)


def test_duplicates_keep_the_best_copy_and_name_it(intake: dict) -> None:
    rejected = by_path(intake["run"]["rejected"])
    assert rejected["dupes/a_recompressed.jpg"].duplicate_of == "dupes/z_original.png"  # lossless wins
    assert "dupes/z_original.png was kept (it is lossless)" in str(rejected["dupes/a_recompressed.jpg"].message)
    assert rejected["dupes/small_copy.png"].duplicate_of == "dupes/b_large.png"  # then more pixels
    assert rejected["more/copy_of_rgb.jpg"].duplicate_of == "good/rgb.jpg"  # then path order


def test_summary_counts_add_up(intake: dict) -> None:
    summary = intake["run"]["summary"]
    assert summary["kept"] + summary["rejected"] == summary["samples"]
    assert sum(summary["reasons"].values()) == summary["rejected"]
    assert summary["archives"]["total"] == len(ARCHIVES)
    assert summary["archives"]["refused"] == sum(r is not None for r in ARCHIVES.values())


def test_every_input_is_accounted_for(intake: dict) -> None:
    run = intake["run"]
    accounted = {r.path for r in run["kept"]} | {r.path for r in run["rejected"]} | \
        {r.path for r in run["manifest"] if r.role in ("sidecar", "archive")}
    assert {r.path for r in run["manifest"]} <= accounted
    top_level = {r.path for r in run["manifest"] if "#" not in r.source}
    assert top_level == intake["inputs"], top_level ^ intake["inputs"]


def test_the_manifest_says_what_was_converted(intake: dict) -> None:
    kept = by_path(intake["run"]["kept"])
    assert any("first is used" in n for n in kept["good/animated.gif"].notes or [])
    assert any(n.startswith("deep") for n in kept["good/deep16.png"].notes or [])
    for path in ("good/rgba.png", "good/palette_transparent.png"):
        assert any(n.startswith("transparency") for n in kept[path].notes or []), path
    assert kept["good/lossless.webp"].lossless and not kept["good/rgb.jpg"].lossless


def test_the_source_is_untouched(intake: dict) -> None:
    assert intake["after"] == intake["before"]


def test_a_rerun_is_identical(intake: dict) -> None:
    work = intake["work"]
    for name, data in intake["outputs"].items():
        assert (work / name).read_bytes() == data, name
    assert json.loads(intake["outputs"]["filter/summary.json"]) == intake["rerun"]["summary"]
