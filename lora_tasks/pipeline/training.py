"""The train stage as the local runner runs it, and what both runners leave in the workspace."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections import deque
from typing import Any

from lora_tasks.errors import INPUT_ERROR_EXIT, LoraTaskError
from lora_tasks.pipeline.stages import timed
from lora_tasks.pipeline.workspace import RunInfo
from lora_tasks.train.outputs import SUMMARY_FILE

log = logging.getLogger(__name__)
STDERR_TAIL = 30
STOP_SECONDS = 10


def train_command(info: RunInfo, dataset: str) -> list[str]:
    """The trainer's command line. The pod spells the same one in templates (it is built before the run
    exists); a test keeps the two equal."""
    return ["python", "-m", "lora_tasks.train", "--config", info.spec, "--dataset", dataset,
            "--output", str(info.train_output)]


@timed
def train_locally(info: RunInfo, dataset: str) -> dict[str, Any]:
    """Run the trainer as a subprocess; it resumes from its newest checkpoint when retried."""
    command = [sys.executable, *train_command(info, dataset)[1:]]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace")
    tail: deque[str] = deque(maxlen=STDERR_TAIL)
    assert process.stderr is not None
    try:
        for line in process.stderr:  # shown live in the task log (as info: stderr is where it logs, not only
            tail.append(line.rstrip())  # errors), and the end kept for the error message
            log.info(tail[-1])
        code = process.wait()
    except BaseException:  # the task was killed (a cancel, a timeout): the trainer must not train on unseen
        stop(process)
        raise
    if code == INPUT_ERROR_EXIT:  # the trainer's "your input needs fixing": retrying cannot help
        raise LoraTaskError("\n".join(line for line in tail if line.startswith("error:")) or "\n".join(tail))
    if code != 0:
        raise RuntimeError(f"the trainer exited with status {code}:\n" + "\n".join(tail))
    return training_result(info)


def stop(process: subprocess.Popen[str]) -> None:
    """Stop the trainer: SIGTERM, then SIGKILL if it lingers (its checkpoints are atomic: a retry resumes)."""
    process.terminate()
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def training_result(info: RunInfo) -> dict[str, Any]:
    """What the trainer left in the workspace (both runners)."""
    adapter = info.adapter_dir
    summary = json.loads((adapter / SUMMARY_FILE).read_text())
    return {"adapter": str(adapter), "steps": summary["steps"], "peak_memory_bytes": summary["peak_memory_bytes"],
            "train_loss": summary["train_loss"], "median_step_seconds": summary["median_step_seconds"],
            "training_samples": summary.get("training_samples")}
