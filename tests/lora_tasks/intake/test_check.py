"""The check stage's command line: a report in the stage folder, and a non-zero exit when a check fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_tasks.intake.check import main
from lora_tasks.intake.manifest import write_rows
from tests.data_checks.test_dataset_suite import GOOD


def test_cli_writes_a_report_and_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_rows(tmp_path / "captioned.jsonl", GOOD[:2])
    write_rows(tmp_path / "rejected.jsonl", [])
    code = main([str(tmp_path / "captioned.jsonl"), "--rejected", str(tmp_path / "rejected.jsonl"),
                 "--out", str(tmp_path / "check")])
    assert code == 1
    assert "kept samples: 2 kept, at least 5 needed (FAILED)" in capsys.readouterr().out
    report = json.loads((tmp_path / "check" / "report.json").read_text())
    assert report["passed"] is False
    assert (tmp_path / "check" / "report.txt").read_text().startswith("dataset checks failed")
