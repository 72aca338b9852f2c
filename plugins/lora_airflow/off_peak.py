"""Wait for off-peak hours, for batch jobs only, without holding a worker or a pool slot.

The operator computes the start of the next off-peak window (include/scheduling.yaml)
and defers to the standard provider's ``DateTimeTrigger``: while deferred, the task is in
the triggerer, not on a worker, and pools that do not count deferred tasks (the default)
free its slot. Non-batch jobs, and batch jobs already inside a window, pass at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator

from lora_tasks.scheduling.windows import load_calendar
from lora_tasks.settings import platform_settings


class WaitOffPeakOperator(BaseOperator):
    """Defer until the next off-peak window when ``priority`` (templated) is 'batch'."""

    template_fields = ("priority",)

    def __init__(self, *, priority: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.priority = priority

    def now(self) -> datetime:
        """The clock, a method so that tests can freeze it."""
        return datetime.now(UTC)

    def execute(self, context: Any) -> dict[str, Any]:
        now = self.now()
        if self.priority != "batch":
            return {"waited": False, "reason": f"priority {self.priority} does not wait"}
        target = load_calendar(platform_settings().scheduling_file).next_start(now)
        if target <= now:
            return {"waited": False, "reason": "inside an off-peak window"}
        self.log.info("batch job: waiting for the off-peak window at %s", target.isoformat())
        self.defer(trigger=DateTimeTrigger(moment=target), method_name="execute_complete")

    def execute_complete(self, context: Any, event: Any = None) -> dict[str, Any]:
        return {"waited": True, "reason": "off-peak window opened"}
