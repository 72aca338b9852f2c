"""
### lora_nightly_batch: submit the batch requests waiting in the inbox

Fires at the start of every off-peak window (include/scheduling.yaml, in its time zone).
Each job spec under `inbox/<tenant>/` in the artifact store becomes one `lora_finetune`
run at batch priority; the request then moves to `submitted/<tenant>/` with its run id, or
to `rejected/<tenant>/` with the reason. Run ids come from the request's content, so a
second run submits nothing twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import MultipleCronTriggerTimetable, dag, task

from lora_tasks.scheduling.windows import load_calendar
from lora_tasks.settings import platform_settings

SETTINGS = platform_settings()
CALENDAR = load_calendar(SETTINGS.scheduling_file)


@dag(
    dag_id="lora_nightly_batch",
    schedule=MultipleCronTriggerTimetable(*CALENDAR.crons(), timezone=CALENDAR.zone.key),
    catchup=False,
    max_active_runs=1,
    tags=["lora", "batch"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(minutes=1)},
    doc_md=__doc__,
)
def lora_nightly_batch() -> None:
    @task
    def collect_requests(dag_run: Any = None) -> list[dict[str, Any]]:
        """Valid requests to submit (of the tenants a hand-triggering user may act for)."""
        from lora_airflow.users import user_roles
        from lora_tasks.pipeline.batch import collect_submissions

        user = dag_run.triggering_user_name
        return collect_submissions(SETTINGS, user, user_roles(user))

    @task
    def submissions(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The TriggerDagRunOperator arguments of each request."""
        from lora_tasks.pipeline.batch import trigger_arguments

        return [trigger_arguments(r) for r in requests]

    @task(trigger_rule="none_failed")  # a request whose run already exists is skipped: still submitted
    def mark_submitted(requests: list[dict[str, Any]]) -> int:
        from lora_tasks.pipeline.batch import mark_all_submitted

        return mark_all_submitted(SETTINGS, requests)

    requests = collect_requests()
    submit = TriggerDagRunOperator.partial(
        task_id="submit", trigger_dag_id="lora_finetune", logical_date=None, skip_when_already_exists=True,
    ).expand_kwargs(submissions(requests))
    submit >> mark_submitted(requests)


lora_nightly_batch()
