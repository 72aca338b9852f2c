"""The check stage: Great Expectations suites (``data_checks``) over the captioned manifest and the
filter's rejections, before any GPU is spent; the report is written into the stage's folder.

    python -m lora_tasks.intake.check CAPTIONED.jsonl --rejected REJECTED.jsonl --out DIR [--config job.yaml]

Writes ``report.json`` and ``report.txt`` into DIR and prints the report; exit status 1
when an expectation fails (the training stage must not start), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from data_checks import CheckReport, run_checks
from lora_tasks.cli import entry_point
from lora_tasks.errors import DatasetError
from lora_tasks.intake.manifest import ManifestRow, note_kinds, read_rows
from lora_tasks.spec.loading import load_job_spec
from lora_tasks.spec.schema import ChecksSection


def check_samples(kept: list[ManifestRow], rejected: list[ManifestRow], checks: ChecksSection, task: str,
                  out_dir: Path) -> CheckReport:
    """Run the suites on the kept and rejected rows; write ``report.txt`` and ``report.json``. A text job's
    samples are its records: a kept file counts once for each record it keeps."""
    if task == "text":
        kept = [row.model_copy(update={"path": f"{row.path}#{n}"}) for row in kept
                for n in range(1, (row.records or 1) + 1)]
    report = run_checks(kept, rejected, checks, task)
    report.notes += intake_notes(kept, rejected)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.txt").write_text(report.text() + "\n")
    (out_dir / "report.json").write_text(json.dumps(report.as_dict(), indent=2))
    return report


def intake_notes(kept: list[ManifestRow], rejected: list[ManifestRow]) -> list[str]:
    """Sentences on what intake did that no expectation judges: unusable captions and the images that
    fell back, archives refused or partly kept, images converted or re-encoded."""
    notes = []
    unusable = [r for r in rejected if r.role == "sidecar"]
    fallbacks = [r for r in kept if r.caption_problem]
    if unusable or fallbacks:
        sources = Counter(str(r.caption_source) for r in fallbacks)
        how = ", ".join(f"{n} {s}" for s, n in sorted(sources.items())) or "none kept"
        example = f" (e.g. {unusable[0].path}: {unusable[0].reason})" if unusable else ""
        notes.append(f"{len(unusable)} sidecar caption(s) unusable{example}; {len(fallbacks)} kept image(s) fell "
                     f"back to another caption ({how})")
    archives = [r for r in rejected if r.role == "archive"]
    lost = [r for r in rejected if r.role == "sample" and str(r.reason).startswith("archive_")]
    if archives or lost:
        notes.append(f"{len(archives)} archive(s) refused, {len(lost)} archive member(s) lost (see rejected.jsonl)")
    for kind, count in sorted(note_kinds(kept).items()):
        notes.append(f"{count} kept image(s) {NOTE_SENTENCES.get(kind, kind)}")
    return notes


NOTE_SENTENCES = {"animated": "are animations: their first frame is used",
                  "transparency": "have transparency, composited on dataset.background",
                  "deep": "have 16- or 32-bit pixels, scaled to 8 bits", "cmyk": "are CMYK, converted to RGB",
                  "reencoded": "had data after the end of the image and were re-encoded clean",
                  "caption": "took the caption of a dropped duplicate"}


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.intake.check",
                                     description="Check a dataset before training.")
    parser.add_argument("kept", type=Path, help="captioned.jsonl (or kept.jsonl) of the kept samples")
    parser.add_argument("--rejected", type=Path, required=True, help="rejected.jsonl of the filter stage")
    parser.add_argument("--out", type=Path, required=True, help="the check stage's folder")
    parser.add_argument("--config", type=Path, help="job spec whose dataset.checks thresholds to use")
    args = parser.parse_args(argv)
    spec = load_job_spec(args.config) if args.config else None
    for path in (args.kept, args.rejected):
        if not path.is_file():
            raise DatasetError(f"{path} does not exist. Fix: pass the caption stage's captioned.jsonl and the filter "
                               "stage's rejected.jsonl")
    try:
        report = check_samples(read_rows(args.kept), read_rows(args.rejected),
                               spec.dataset.checks if spec else ChecksSection(), spec.job.task if spec else "image",
                               args.out)
    except OSError as exc:  # exit 1 means "a check failed": a file problem must not look like one
        raise DatasetError(f"{exc.filename}: {exc.strerror}. Fix: check the paths and their permissions") from None
    print(report.text())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
