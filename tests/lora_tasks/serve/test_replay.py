"""The replay command: its output lines, the RAM tier behind the pipeline tier, and its errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lora_tasks.errors import INPUT_ERROR_EXIT
from lora_tasks.serve.replay import Requests, main, pipeline_misses, ram_hits, read_requests, report

LINE = re.compile(r"policy (\w+) slots 2 hit_rate (\d\.\d{4}) of_optimal (\d\.\d{4})")


def requests_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "requests.txt"
    path.write_text(text)
    return path


def test_every_policy_and_belady_get_a_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = requests_file(tmp_path, "# a comment\na\nb\n\nc\na  # a again\nb\nc\n")
    assert main([str(path), "--slots", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    parsed = [LINE.fullmatch(line).groups() for line in lines]  # type: ignore[union-attr]
    assert [name for name, _, _ in parsed] == ["lru", "lfu", "arc", "tinylfu", "belady"]
    assert parsed[0] == ("lru", "0.0000", "0.0000")  # a cycle of 3 over 2 slots: LRU always misses
    assert parsed[-1] == ("belady", "0.3333", "1.0000")  # the second a and c hit


def test_policies_can_be_chosen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = requests_file(tmp_path, "a\na\nb\na\n")
    assert main([str(path), "--slots", "1", "--policy", "lfu"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "policy lfu slots 1 hit_rate 0.2500 of_optimal 1.0000",
        "policy belady slots 1 hit_rate 0.2500 of_optimal 1.0000",
    ]


def test_the_ram_tier_serves_pipeline_misses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = requests_file(tmp_path, "a 100\nb 100\nc 100\na\nb\nc\nbig 1000\na\n")
    assert main([str(path), "--slots", "1", "--ram-bytes", "300", "--policy", "lru"]) == 0
    out = capsys.readouterr().out.splitlines()
    # the pipeline misses all 8; RAM serves the second a, b, c; big evicts everything and itself; a misses
    assert out[-1] == "tier ram policy lru bytes 300 hit_rate 0.3750"
    assert ram_hits(["x", "y", "x"], "lru", 10, {}, default=5) == 1
    assert ram_hits(["x", "y", "z", "x"], "lru", 10, {}, default=5) == 0


def test_the_report_function_matches_the_command() -> None:
    requests = Requests(list("abab"), {})
    assert report(requests, 2, ["lru"]) == ["policy lru slots 2 hit_rate 0.5000 of_optimal 1.0000",
                                            "policy belady slots 2 hit_rate 0.5000 of_optimal 1.0000"]
    assert pipeline_misses(list("abcab"), "lru", 2) == list("abcab")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has no requests. Fix: write one adapter id a line"),
        ("# only a comment\n\n", "has no requests"),
        ("a\nb 12 13\n", "line 2: 'b 12 13' is not 'ID' or 'ID BYTES'. Fix:"),
        ("a lots\n", "line 1: 'a lots' is not 'ID' or 'ID BYTES'"),
        ("a 10\nb\na 11\n", "line 3: a was 10 bytes on an earlier line, 11 here. Fix: give an adapter one size"),
    ],
)
def test_bad_files_are_refused_with_the_line_and_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          text: str, message: str) -> None:
    path = requests_file(tmp_path, text)
    assert main([str(path), "--slots", "4"]) == INPUT_ERROR_EXIT
    error = capsys.readouterr().err
    assert error.startswith(f"error: {path}") and message in error


def test_a_missing_file_and_bad_slots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "none.txt"), "--slots", "4"]) == INPUT_ERROR_EXIT
    assert "cannot read it" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(requests_file(tmp_path, "a\n")), "--slots", "0"])
    assert read_requests(requests_file(tmp_path, "a 5\na\n")) == Requests(["a", "a"], {"a": 5})
