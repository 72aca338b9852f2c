"""The per-step metrics log (JSONL) and the memory figure it reports.

One JSON object per optimizer step: step, epoch, loss, lr, samples/s, step seconds and
peak memory so far. On resume, records past the checkpoint's step (written by the run
that was killed) are dropped, so the log reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any, TextIO

import torch


def peak_memory_bytes(device: torch.device) -> int:
    """Peak GPU memory allocated by torch on CUDA; peak resident set size of the process on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """This process's own peak RSS. On Linux that is ``VmHWM``, not ``ru_maxrss``: a child that
    ``subprocess`` starts by vfork + exec inherits its parent's peak in ``ru_maxrss`` (the
    Airflow worker's, or pytest's), while ``VmHWM`` belongs to the new address space alone (psutil
    reports no peak on Linux, so the status file is read here)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class MetricsLog:
    """Append-only JSONL, flushed at checkpoints and at the end (not every step: that costs time)."""

    def __init__(self, path: Path, resume_step: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        if path.exists():
            kept = [line for line in path.read_text().splitlines() if _step_of(line) <= resume_step]
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(f"{line}\n" for line in kept))
            tmp.replace(path)
        self._file: TextIO = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return sys.maxsize  # a torn last line from a killed run: drop it


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
