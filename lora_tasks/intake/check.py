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
from pathlib import Path

from data_checks import CheckReport, run_checks
from lora_tasks.cli import entry_point
from lora_tasks.errors import DatasetError
from lora_tasks.intake.manifest import ManifestRow, read_rows
from lora_tasks.spec.loading import load_job_spec
from lora_tasks.spec.schema import ChecksSection


def check_samples(kept: list[ManifestRow], rejected: list[ManifestRow], checks: ChecksSection, task: str,
                  out_dir: Path) -> CheckReport:
    """Run the suites on the kept and rejected rows; write ``report.txt`` and ``report.json``."""
    report = run_checks(kept, rejected, checks, task)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.txt").write_text(report.text() + "\n")
    (out_dir / "report.json").write_text(json.dumps(report.as_dict(), indent=2))
    return report


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
