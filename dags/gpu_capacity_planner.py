"""
### gpu_capacity_planner: add GPUs before the queue grows, remove them when idle

Every five minutes: reads the ledger's queue (runs past their data checks, with predicted
durations and deadlines) and running jobs (with their remaining predicted time), the
interactive arrival forecast and the price window; decides the GPUs each type should
have (`lora_tasks.scheduling.planner`, with hysteresis and a cool-down so it does not
flap) and records every decision with its inputs in the ledger. In Kubernetes mode it
then sets each GPU pool's slots to the GPUs ready in the cluster and scales the type's
low-priority placeholder deployment, so the cluster autoscaler brings nodes up ahead of
the real pods.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import CronTriggerTimetable, dag, task

from lora_tasks.settings import platform_settings

SETTINGS = platform_settings()


@dag(
    dag_id="gpu_capacity_planner",
    schedule=CronTriggerTimetable("*/5 * * * *", timezone="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["lora", "capacity"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
)
def gpu_capacity_planner() -> None:
    @task
    def decide() -> list[dict[str, Any]]:
        """Decide GPUs per type from the ledger and record the decisions."""
        from lora_tasks.pipeline.capacity import decide

        return decide(SETTINGS, datetime.now(UTC))

    @task
    def apply(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Kubernetes mode: pool slots from ready GPUs, placeholder replicas from the decisions."""
        from lora_airflow.fleet import apply_decisions

        return apply_decisions(decisions, SETTINGS)

    apply(decide())


gpu_capacity_planner()
