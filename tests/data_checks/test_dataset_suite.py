"""The Great Expectations gate: passes a good dataset, names every failed expectation with numbers."""

from __future__ import annotations

from data_checks import run_checks
from lora_tasks.intake.manifest import ManifestRow
from lora_tasks.spec.schema import ChecksSection


def row(path: str, side: int = 512, caption: str | None = "a cat", reason: str | None = None,
        source: str = "sidecar") -> ManifestRow:
    return ManifestRow(path=path, source=f"file:///{path}", width=side, height=side + 10, caption=caption,
                       reason=reason, type="jpg", caption_source=source)


GOOD = [row(f"{i}.jpg") for i in range(10)]


def test_a_good_dataset_passes() -> None:
    report = run_checks(GOOD, [row("x.jpg", reason="too_small")], ChecksSection())
    assert report.passed, report.text()
    assert len(report.findings) == 5


def test_every_failure_is_named_with_what_was_observed() -> None:
    kept = [row("a.jpg"), row("b.jpg", side=128), row("IMG_3.jpg", caption="sks, IMG 3", source="filename")]
    rejected = [row(f"d{i}.jpg", reason="exact_duplicate") for i in range(4)] + [row("e.jpg", reason="nsfw")]
    report = run_checks(kept, rejected, ChecksSection(min_images=5, min_caption_coverage=0.9, min_side=256,
                                                      max_duplicate_share=0.2, max_rejected_share=0.5))
    assert not report.passed
    text = report.text()
    assert "failed: 5 of 5" in text
    assert "kept samples: 3 kept, at least 5 needed" in text
    assert ("caption coverage: 67% of kept samples have a caption of their own (1 of 3 have none or only words "
            "from the file name), at least 90%") in text
    assert "minimum resolution: 1 of 3 kept images have a short side under 256 px (e.g. 128)" in text
    assert "duplicate share: 50% of the upload's 8 samples (4), at most 20% allowed" in text
    assert "rejected share: 62% of the upload's 8 samples (5), at most 50% allowed" in text


def test_empty_upload_fails_on_count_only() -> None:
    report = run_checks([], [], ChecksSection())
    assert [f.passed for f in report.findings].count(False) == 1
    assert "0 kept" in report.text()


def test_text_datasets_skip_the_resolution_and_caption_checks() -> None:
    report = run_checks([row(f"{i}.txt", side=0, caption=None) for i in range(6)], [], ChecksSection(), task="text")
    assert report.passed and len(report.findings) == 3


