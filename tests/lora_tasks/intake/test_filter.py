"""Filtering: every bad file rejected with its reason and a sentence, every good one kept."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lora_tasks.errors import LoraTaskError
from lora_tasks.intake.antivirus import ClamdSocket, ClamScan, NoAntivirus, Verdict, antivirus_from
from lora_tasks.intake.clamd_daemon import private_clamd
from lora_tasks.intake.filter import filter_manifest, main
from lora_tasks.intake.manifest import read_rows
from lora_tasks.intake.nsfw import NudeNetDetector
from lora_tasks.intake.scan import scan_dataset
from lora_tasks.intake.text_records import read_records
from lora_tasks.settings import PlatformSettings
from lora_tasks.spec.schema import FilterSection
from tests.lora_tasks.intake.corpus import (
    ARCHIVE_REASONS,
    EICAR,
    EXPECTED,
    FILTER_OPTIONS,
    TEXT_EXPECTED,
)


class RedDetector:
    """A stand-in NSFW model for the plug-in point: scores an image by its share of pure red pixels."""

    name = "red-share"

    def scores(self, paths: list[Path]) -> list[float]:
        out = []
        for path in paths:
            pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
            out.append(float(((pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)).mean()))
        return out


@pytest.fixture(scope="module")
def image_manifest(image_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    manifest = tmp_path_factory.mktemp("scan") / "manifest.jsonl"
    scan_dataset(str(image_corpus), manifest, workers=2)
    return manifest


@pytest.fixture(scope="module")
def filtered(image_manifest: Path, clamav_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("filter")
    filter_manifest(image_manifest, out, FilterSection(**FILTER_OPTIONS), "image", workers=2,
                    antivirus=ClamScan(clamav_database), detector=RedDetector())
    return out


def by_path(path: Path) -> dict[str, dict]:
    return {row["path"]: row for row in map(json.loads, path.read_text().splitlines())}


@pytest.mark.parametrize("path", sorted(EXPECTED), ids=lambda p: p.replace("\n", "\\n"))
def test_each_file_gets_its_verdict(filtered: Path, path: str) -> None:
    kept, rejected = by_path(filtered / "kept.jsonl"), by_path(filtered / "rejected.jsonl")
    expected = EXPECTED[path]
    if expected is None:
        assert path in kept, rejected.get(path)
    else:
        assert rejected[path]["reason"] == expected, rejected[path]
        message = rejected[path]["message"]
        assert path.split("/")[-1] in message and len(message) > len(path) + 15


@pytest.mark.parametrize(("path", "reason"), sorted(ARCHIVE_REASONS.items()))
def test_unsafe_archives_are_rejected_whole(filtered: Path, path: str, reason: str) -> None:
    row = by_path(filtered / "rejected.jsonl")[path]
    assert row["reason"] == reason and "not expanded" in row["message"]


def test_summary_counts_every_reason(filtered: Path) -> None:
    summary = json.loads((filtered / "summary.json").read_text())
    expected_reasons = [r for r in EXPECTED.values() if r] + list(ARCHIVE_REASONS.values())
    assert summary["kept"] == sum(r is None for r in EXPECTED.values())
    assert summary["rejected"] == len(expected_reasons)
    assert sum(summary["reasons"].values()) == summary["rejected"]
    assert summary["antivirus"] == "clamscan" and summary["nsfw_detector"] == "red-share"


def test_duplicates_point_at_the_original(filtered: Path) -> None:
    rejected = by_path(filtered / "rejected.jsonl")
    # identical bytes: the first by path stays, and takes the caption only the dropped copy had
    assert rejected["good/photo_0.jpg"]["duplicate_of"] == "bad/copy_of_photo_0.jpg"
    assert "bad/copy_of_photo_0.jpg was kept (it comes first by path)" in rejected["good/photo_0.jpg"]["message"]
    kept = by_path(filtered / "kept.jsonl")["bad/copy_of_photo_0.jpg"]
    assert kept["caption"] == "a photo of coloured blobs, sks style" and kept["sidecar"] == "good/photo_0.txt"
    assert rejected["bad/photo_1_resaved.jpg"]["duplicate_of"] == "good/photo_1.jpg"
    assert rejected["red.jpg"]["nsfw_score"] == 1.0


def test_rerun_gives_identical_files(filtered: Path, image_manifest: Path, clamav_database: Path,
                                     tmp_path: Path) -> None:
    filter_manifest(image_manifest, tmp_path, FilterSection(**FILTER_OPTIONS), "image", workers=1,
                    antivirus=ClamScan(clamav_database), detector=RedDetector())
    for name in ("kept.jsonl", "rejected.jsonl", "summary.json"):
        assert (tmp_path / name).read_bytes() == (filtered / name).read_bytes(), name


def test_text_dataset(text_corpus: Path, clamav_database: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "scan" / "manifest.jsonl"
    scan_dataset(str(text_corpus), manifest, workers=1)
    options = FilterSection(max_text_chars=10_000, text_near_duplicate_similarity=0.8)
    result = filter_manifest(manifest, tmp_path / "filter", options, "text", workers=1,
                             antivirus=ClamScan(clamav_database))
    verdicts = {r.path: r.reason for r in result.kept + result.rejected}
    assert verdicts == TEXT_EXPECTED
    assert next(r for r in result.rejected if r.path == "story_a_edited.txt").duplicate_of == "story_a.txt"


def test_clamd_gives_the_same_verdicts(clamav_database: Path, tmp_path: Path) -> None:
    """A real clamd on a private socket, with the same signature file."""
    with private_clamd(clamav_database, tmp_path / "clamd") as socket_path:
        engine = antivirus_from(PlatformSettings(antivirus="clamd", clamd_socket=socket_path))
        assert isinstance(engine, ClamdSocket)
        files = [tmp_path / "clean.jpg", tmp_path / "new\nline: x FOUND.jpg", tmp_path / "gone.jpg"]
        files[0].write_bytes(b"\xff\xd8\xff plain")
        files[1].write_bytes(EICAR)
        assert [v.status for v in engine.scan(files)] == ["clean", "infected", "unscanned"]
        assert engine.scan([files[1]])[0].detail == "Test.EICAR.UNOFFICIAL"


def test_clamscan_maps_odd_names_and_missing_files(clamav_database: Path, tmp_path: Path) -> None:
    odd = tmp_path / "new\nline: x FOUND.jpg"
    odd.write_bytes(EICAR)
    clean = tmp_path / "clean.jpg"
    clean.write_bytes(b"nothing")
    verdicts = ClamScan(clamav_database).scan([clean, odd, tmp_path / "vanished.jpg"])
    assert verdicts == [Verdict("clean"), Verdict("infected", "Test.EICAR.UNOFFICIAL"),
                        Verdict("unscanned", "no result from the scanner")]


def test_scanner_problems_fail_clearly(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_bytes(b"x")
    with pytest.raises(LoraTaskError, match="clamscan failed"):
        ClamScan(tmp_path / "no-such.hdb").scan([tmp_path / "x.jpg"])
    with pytest.raises(LoraTaskError, match="'clamscan' is not installed"):
        ClamScan(binary="clamscan-that-is-not-there")
    with pytest.raises(LoraTaskError, match="needs LORA_CLAMD_SOCKET"):
        antivirus_from(PlatformSettings(antivirus="clamd"))
    with pytest.raises(LoraTaskError, match="clamd does not answer"):
        antivirus_from(PlatformSettings(antivirus="clamd", clamd_socket=tmp_path / "none.sock"))
    assert isinstance(antivirus_from(PlatformSettings(antivirus="off")), NoAntivirus)


def test_nudenet_scores_real_images(image_manifest: Path, clamav_database: Path, tmp_path: Path) -> None:
    """The optional extra is installed for the tests: its ONNX model runs offline on the corpus."""
    options = FilterSection(**FILTER_OPTIONS, nsfw_detector="nudenet")
    result = filter_manifest(image_manifest, tmp_path, options, "image", workers=1,
                             antivirus=ClamScan(clamav_database))
    assert result.summary["nsfw_detector"] == "nudenet"
    scored = [r for r in result.kept if r.nsfw_score is not None]
    assert len(scored) == len(result.kept) and all(r.nsfw_score < 0.1 for r in scored)
    assert "red.jpg" in {r.path for r in result.kept}  # a red square is not nudity to a real model


def test_nudenet_without_the_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nudenet", None)  # as in a default install, where it is absent
    with pytest.raises(LoraTaskError, match=r"requirements-nsfw\.txt"):
        NudeNetDetector()


def test_cli(image_manifest: Path, clamav_database: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LORA_CLAMAV_DATABASE", str(clamav_database))
    from lora_tasks.settings import platform_settings

    platform_settings.cache_clear()
    try:
        assert main([str(image_manifest), "--out", str(tmp_path)]) == 0
    finally:
        platform_settings.cache_clear()
    out = capsys.readouterr().out
    assert "kept" in out and "too_small" in out
    assert read_rows(tmp_path / "kept.jsonl")


def test_the_near_duplicate_threshold_decides(filtered: Path, image_manifest: Path, tmp_path: Path) -> None:
    message = by_path(filtered / "rejected.jsonl")["bad/photo_1_resaved.jpg"]["message"]
    distance = int(message.split("distance ")[1].split(" ")[0])
    strict = FilterSection(**{**FILTER_OPTIONS, "near_duplicate_distance": distance - 1}) if distance else None
    off = FilterSection(**{**FILTER_OPTIONS, "near_duplicate_distance": None})
    for options in filter(None, (strict, off)):
        result = filter_manifest(image_manifest, tmp_path / str(options.near_duplicate_distance), options,
                                 antivirus=NoAntivirus(), detector=RedDetector())
        assert "bad/photo_1_resaved.jpg" in {r.path for r in result.kept}
        assert "good/photo_0.jpg" not in {r.path for r in result.kept}  # exact copies still go


def test_the_filter_writes_nothing_into_the_dataset(image_manifest: Path, image_corpus: Path) -> None:
    with pytest.raises(LoraTaskError, match="inside the dataset"):
        filter_manifest(image_manifest, image_corpus / "good" / "filtered", FilterSection(**FILTER_OPTIONS),
                        antivirus=NoAntivirus())
    assert not (image_corpus / "good" / "filtered").exists()


def test_the_perceptual_hash_is_imagehash_phash_bit_for_bit() -> None:
    """The filter computes phash's DCT by matrix (only the eight rows it keeps): the bits must be
    imagehash's own, or near-duplicate distances would mean something else."""
    import imagehash

    from lora_tasks.intake.decode import perceptual_hash

    rng = np.random.default_rng(0)
    for i in range(300):
        size = (int(rng.integers(32, 200)), int(rng.integers(32, 200)))
        coarse = rng.integers(0, 256, (max(2, size[1] // 8), max(2, size[0] // 8), 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize(size, Image.Resampling.BILINEAR)
        if i % 3 == 0:
            image = image.convert("L")
        assert str(perceptual_hash(image)) == str(imagehash.phash(image)), i


def test_trailing_data_is_rejected_or_reencoded_never_passed_on(tmp_path: Path) -> None:
    """A zip after a JPEG's end: refused by default; with trailing_data: reencode its pixels go on as a clean
    PNG in the filter's folder, and the bytes after the image go nowhere."""
    import io
    import zipfile

    from tests.lora_tasks.intake.corpus import jpeg_bytes, photo

    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as archive:
        archive.writestr("run.sh", "echo owned")
    data = tmp_path / "data"
    data.mkdir()
    source = data / "polyglot.jpg"
    source.write_bytes(jpeg_bytes(photo(1)) + payload.getvalue())
    original = source.read_bytes()
    scan_dataset(str(data), tmp_path / "scan" / "manifest.jsonl", workers=1)
    manifest = tmp_path / "scan" / "manifest.jsonl"
    refused = filter_manifest(manifest, tmp_path / "refuse", FilterSection(**FILTER_OPTIONS), workers=1,
                              antivirus=NoAntivirus())
    assert [r.reason for r in refused.rejected] == ["trailing_data"]
    assert "data after the end of the image" in str(refused.rejected[0].message)
    options = FilterSection(**FILTER_OPTIONS, trailing_data="reencode")
    cleaned = filter_manifest(manifest, tmp_path / "clean", options, workers=1, antivirus=NoAntivirus())
    [row] = cleaned.kept
    clean = Path(str(row.local_path))
    assert clean.parent == tmp_path / "clean" / "clean" and clean.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"echo owned" not in clean.read_bytes()
    with Image.open(source) as decoded, Image.open(clean) as reencoded:
        assert np.array_equal(np.asarray(decoded.convert("RGB")), np.asarray(reencoded))
    assert any(n.startswith("reencoded") for n in row.notes or [])
    assert source.read_bytes() == original


def test_text_files_are_judged_record_by_record(clamav_database: Path, tmp_path: Path) -> None:
    """One bad example costs itself, not its file; the upload is never touched."""
    upload = tmp_path / "upload"
    upload.mkdir()
    story = " ".join(f"word{i}" for i in range(300))
    chats = [{"prompt": f"question {i} " + story[:40], "completion": f"answer {i} in the pirate voice"}
             for i in range(6)]
    chats.insert(3, {"prompt": "   ", "completion": " "})  # no words
    chats.insert(4, dict(chats[1]))  # an exact copy of record 2
    chats.append({"prompt": "long", "completion": "x " * 3000})
    lines = [json.dumps(c) for c in chats]
    (upload / "chats.jsonl").write_text("\n".join(lines) + "\n")
    (upload / "broken.jsonl").write_text('{"text": "fine"}\n{"text": "cut\n')
    (upload / "notes.txt").write_text(story + "\n")
    (upload / "notes_copy.txt").write_text(story.replace("word150 ", "other ") + "\n")
    before = {p.name: p.read_bytes() for p in upload.iterdir()}
    manifest = tmp_path / "scan" / "manifest.jsonl"
    scan_dataset(str(upload), manifest, workers=1)
    options = FilterSection(max_text_chars=5000, text_near_duplicate_similarity=0.8)
    result = filter_manifest(manifest, tmp_path / "filter", options, "text", workers=1,
                             antivirus=ClamScan(clamav_database))
    verdicts = {r.path: r.reason for r in result.kept + result.rejected}
    assert verdicts == {"chats.jsonl": None, "chats.jsonl#4": "empty", "chats.jsonl#5": "exact_duplicate",
                        "chats.jsonl#9": "too_long", "broken.jsonl": "malformed", "notes.txt": None,
                        "notes_copy.txt": "near_duplicate"}
    rejected = {r.path: r for r in result.rejected}
    assert rejected["chats.jsonl#5"].duplicate_of == "chats.jsonl#2"
    assert "broken.jsonl line 2 is not JSON" in rejected["broken.jsonl"].message
    kept = {r.path: r for r in result.kept}
    assert kept["chats.jsonl"].records == 6 and kept["notes.txt"].records == 1
    written = Path(str(kept["chats.jsonl"].local_path))
    assert written.is_relative_to(tmp_path / "filter" / "records")
    assert [json.loads(line) for line in written.read_text().splitlines()] == [chats[i] for i in (0, 1, 2, 5, 6, 7)]
    assert kept["notes.txt"].local_path == str(upload / "notes.txt")  # all kept: passed on as it is
    assert result.summary["records"] == {"kept": 7, "rejected": 3,
                                         "reasons": {"empty": 1, "exact_duplicate": 1, "too_long": 1}}
    assert {p.name: p.read_bytes() for p in upload.iterdir()} == before


def test_text_files_in_an_archive_are_read_by_their_member_names(clamav_database: Path, tmp_path: Path) -> None:
    """Members are extracted under numbers: the member's own name says it is JSON lines, and what is kept
    is written where the trainer reads it by that name."""
    import zipfile

    upload = tmp_path / "upload"
    upload.mkdir()
    with zipfile.ZipFile(upload / "chats.zip", "w") as archive:
        archive.writestr("voice/train.jsonl", "".join(json.dumps({"text": f"example {i} in the voice"}) + "\n"
                                                      for i in range(4)))
    manifest = tmp_path / "scan" / "manifest.jsonl"
    scan_dataset(str(upload), manifest, workers=1)
    result = filter_manifest(manifest, tmp_path / "filter", FilterSection(text_near_duplicate_similarity=None),
                             "text", workers=1, antivirus=ClamScan(clamav_database))
    [kept] = result.kept
    assert (kept.path, kept.records, result.rejected) == ("chats.zip/voice/train.jsonl", 4, [])
    written = Path(str(kept.local_path))
    assert written.suffix == ".jsonl" and len(read_records(written)) == 4


def test_a_parquet_table_is_a_text_dataset(clamav_database: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    upload = tmp_path / "upload"
    upload.mkdir()
    from datetime import UTC, datetime

    rows = [{"id": i, "created": datetime(2026, 1, 1 + i, tzinfo=UTC), "text": f"example number {i} of the table"}
            for i in range(5)]
    rows.append({**rows[0], "id": 99})  # the same text under another id: a copy all the same
    pq.write_table(pa.Table.from_pylist(rows), upload / "rows.parquet")
    manifest = tmp_path / "scan" / "manifest.jsonl"
    scan_dataset(str(upload), manifest, workers=1)
    result = filter_manifest(manifest, tmp_path / "filter", FilterSection(text_near_duplicate_similarity=None),
                             "text", workers=1, antivirus=ClamScan(clamav_database))
    [kept] = result.kept
    assert (kept.type, kept.records) == ("parquet", 5)
    assert [(r.path, r.reason) for r in result.rejected] == [("rows.parquet#6", "exact_duplicate")]
    written = [json.loads(line) for line in Path(str(kept.local_path)).read_text().splitlines()]
    assert written[0] == {"text": "example number 0 of the table"}  # the layout's fields, as TRL reads them
