"""The CPU memory figure belongs to the trainer's own process, not to whoever started it."""

from __future__ import annotations

import subprocess
import sys

PARENT_BYTES = 2 * 2**30


def test_a_child_does_not_report_its_parents_peak() -> None:
    # The local runner starts the trainer from an Airflow worker; ru_maxrss would hand the child
    # the worker's peak (vfork + exec keeps it), making every CPU estimate look 2x off.
    held = bytearray(PARENT_BYTES)
    held[:: 4096] = b"\1" * (PARENT_BYTES // 4096)  # touch every page so it is resident
    code = "from lora_tasks.train.metrics import peak_rss_bytes; print(peak_rss_bytes())"
    child = int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert 50 * 2**20 < child < PARENT_BYTES * 0.6, child / 2**20
    del held
