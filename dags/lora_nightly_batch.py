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
        """Valid requests to submit; malformed ones are moved to rejected/ with the reason. A run
        triggered by hand takes only the tenants its user may act for: the runs it creates carry
        that user, and would fail the tenant check for everyone else's requests."""
        from lora_airflow.users import user_roles
        from lora_tasks.pipeline.batch import collect_requests
        from lora_tasks.pipeline.tenancy import load_tenants, may_act
        from lora_tasks.stores import open_store

        user, tenants = dag_run.triggering_user_name, load_tenants(SETTINGS.tenants_file)
        roles = user_roles(user)
        requests, rejected = collect_requests(open_store(SETTINGS.artifact_root, SETTINGS.s3_endpoint_url),
                                              lambda t: t not in tenants or may_act(tenants[t], user, roles))
        print(f"{len(requests)} request(s) to submit, {len(rejected)} rejected")
        return [{"trigger_run_id": r.run_id, "conf": r.conf, "key": r.key} for r in requests]

    @task
    def submissions(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The TriggerDagRunOperator arguments of each request."""
        return [{"trigger_run_id": r["trigger_run_id"], "conf": r["conf"]} for r in requests]

    @task(trigger_rule="none_failed")  # a request whose run already exists is skipped: still submitted
    def mark_submitted(requests: list[dict[str, Any]]) -> int:
        from lora_tasks.pipeline.batch import mark_submitted
        from lora_tasks.stores import open_store

        store = open_store(SETTINGS.artifact_root, SETTINGS.s3_endpoint_url)
        for request in requests:
            mark_submitted(store, request["key"], request["trigger_run_id"])
        return len(requests)

    requests = collect_requests()
    submit = TriggerDagRunOperator.partial(
        task_id="submit", trigger_dag_id="lora_finetune", logical_date=None, skip_when_already_exists=True,
    ).expand_kwargs(submissions(requests))
    submit >> mark_submitted(requests)


lora_nightly_batch()
