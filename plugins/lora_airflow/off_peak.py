"""Wait for off-peak hours, for batch jobs only, without holding a worker or a pool slot.

The operator computes the start of the next off-peak window (include/scheduling.yaml)
and defers to the standard provider's ``DateTimeTrigger``: while deferred, the task is in
the triggerer, not on a worker, and pools that do not count deferred tasks (the default)
free its slot. Non-batch jobs, and batch jobs already inside a window, pass at once; a
batch job whose deadline cannot wait for the window waits only until it must start.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator

from lora_tasks.scheduling.planner import PlannerConfig, latest_start
from lora_tasks.scheduling.windows import load_calendar
from lora_tasks.settings import platform_settings


class WaitOffPeakOperator(BaseOperator):
    """Defer until the next off-peak window when ``priority`` (templated) is 'batch', but no
    later than the job's deadline allows (``deadline``, ISO 8601, and ``predicted_seconds``,
    both templated; empty or 'None' for no deadline)."""

    template_fields = ("priority", "deadline", "predicted_seconds")

    def __init__(self, *, priority: str, deadline: str = "", predicted_seconds: str = "0", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.priority, self.deadline, self.predicted_seconds = priority, deadline, predicted_seconds

    def now(self) -> datetime:
        """The clock, a method so that tests can freeze it."""
        return datetime.now(UTC)

    def execute(self, context: Any) -> dict[str, Any]:
        now = self.now()
        if self.priority != "batch":
            return {"waited": False, "reason": f"priority {self.priority} does not wait"}
        target = load_calendar(platform_settings().scheduling_file).next_start(now)
        urgent = None  # why the deadline, not the window, decides
        if self.deadline not in ("", "None"):
            must_start = latest_start(datetime.fromisoformat(self.deadline), float(self.predicted_seconds),
                                      PlannerConfig())
            if must_start < target:
                target, urgent = must_start, f"its deadline {self.deadline} cannot wait for the window"
        if target <= now:
            return {"waited": False, "reason": urgent or "inside an off-peak window"}
        self.log.info("batch job: waiting until %s (%s)", target.isoformat(), urgent or "the off-peak window")
        self.defer(trigger=DateTimeTrigger(moment=target), method_name="execute_complete",
                   kwargs={"reason": urgent or "off-peak window opened"})

    def execute_complete(self, context: Any, event: Any = None, reason: str = "off-peak window opened"
                         ) -> dict[str, Any]:
        return {"waited": True, "reason": reason}
