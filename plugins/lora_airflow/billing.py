"""Bill every try of the train task in the ledger, whichever runner ran it.

Task callbacks: the start of a try is recorded when it begins (so the capacity planner
sees it running), its end and cost when it succeeds, fails or is retried. A training pod's
try is billed first, and exactly, by ``lora_airflow.runners.kubernetes_pod.PodGpuTime`` from the
pod's own timestamps; the task callbacks then find it billed. Rows are keyed by run and
try number, so a callback that fires twice bills once; a failing ledger is logged, never
allowed to fail the training it describes.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from lora_tasks.clock import Clock, utc_now

log = logging.getLogger(__name__)


def _peak_bytes(workspace: str) -> int | None:
    """The try's peak memory, from the trainer's metrics in the run's workspace."""
    from lora_tasks.pipeline.workspace import train_output
    from lora_tasks.train.outputs import METRICS_FILE

    try:
        metrics = (train_output(workspace) / METRICS_FILE).read_text()
        return max(json.loads(line)["peak_memory_bytes"] for line in metrics.splitlines() if line)
    except (OSError, ValueError, KeyError):
        return None


def attempt_started(context: Any, clock: Clock = utc_now) -> None:
    from lora_tasks.ledger.store import open_ledger
    from lora_tasks.settings import platform_settings

    try:
        ti = context["ti"]
        open_ledger(platform_settings().ledger_url).attempt_started(context["run_id"], ti.try_number,
                                                                     ti.start_date or clock())
    except Exception:
        log.exception("could not record the start of this training attempt in the ledger")


def bill_try(context: Any, started_at: datetime, finished_at: datetime, succeeded: bool) -> None:
    """Write one try's GPU time and cost; the first bill of a try wins (callbacks may repeat)."""
    from lora_tasks.ledger.store import open_ledger
    from lora_tasks.scheduling.windows import load_calendar
    from lora_tasks.settings import platform_settings

    try:
        settings = platform_settings()
        ti = context["ti"]
        info = ti.xcom_pull(task_ids="validate_request") or {}
        open_ledger(settings.ledger_url).attempt_finished(
            context["run_id"], ti.try_number, started_at=started_at, finished_at=finished_at, succeeded=succeeded,
            peak_bytes=_peak_bytes(info.get("workspace", "")), calendar=load_calendar(settings.scheduling_file))
    except Exception:
        log.exception("could not bill this training attempt in the ledger")


def _finished(context: Any, succeeded: bool, clock: Clock) -> None:
    """A callback runs as its try ends: the clock's time is the try's end."""
    now = clock()
    bill_try(context, context["ti"].start_date or now, now, succeeded)


def attempt_succeeded(context: Any, clock: Clock = utc_now) -> None:
    _finished(context, True, clock)


def attempt_failed(context: Any, clock: Clock = utc_now) -> None:
    _finished(context, False, clock)
