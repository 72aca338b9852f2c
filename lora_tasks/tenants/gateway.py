"""The tenant API's way into Airflow: its REST API through the official client (``apache-airflow-client``),
logged in as the platform's service identity (``LORA_GATEWAY_USER``), never as a tenant."""

from __future__ import annotations

import json
import threading
from typing import Any

DAG_ID = "lora_finetune"
NEVER_FAILED = frozenset({"cleanup", "outcome"})
"""The run's teardown and its judge: they must run for a cancelled run to end failed and clean."""
FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
TIMEOUT_SECONDS = 30.0


class AirflowUnavailable(Exception):
    """Airflow did not answer, or refused the service identity: not the tenant's to fix."""


NOTHING = object()
"""No value for Airflow's 404: it is an error."""


class AirflowGateway:
    """Triggers and cancels ``lora_finetune`` runs; logs in on first use and again when the token expires."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url, self.user, self.password = url.rstrip("/"), user, password
        self._client: Any = None
        self._lock = threading.Lock()

    def trigger(self, conf: dict[str, Any]) -> str:
        """A new run with ``conf``; its run id. A conf the DAG's params refuse raises ValueError (its message)."""
        from airflow_client.client import DagRunApi, TriggerDAGRunPostBody

        body = TriggerDAGRunPostBody(conf=conf, logical_date=None)
        return self._call(lambda api: DagRunApi(api).trigger_dag_run(DAG_ID, body, _request_timeout=TIMEOUT_SECONDS)
                          ).dag_run_id

    def cancel(self, run_id: str) -> list[str]:
        """Fail every stage of the run that has not finished, and name them: Airflow stops a running one (the
        training pod is deleted by the operator's on_kill), the rest never start, and ``outcome`` fails the run
        while the ``cleanup`` teardown still runs. (Patching the run itself to failed would not do: with a
        teardown pending, Airflow skips the unfinished tasks and leaves the run to end as a success.)"""
        from airflow_client.client import PatchTaskInstanceBody, TaskInstanceApi

        def fail_unfinished(api: Any) -> list[str]:
            tasks = TaskInstanceApi(api)
            listed = tasks.get_task_instances(DAG_ID, run_id, _request_timeout=TIMEOUT_SECONDS).task_instances
            stopped = [ti.task_id for ti in listed
                       if ti.task_id not in NEVER_FAILED and getattr(ti.state, "value", ti.state) not in FINISHED]
            for task_id in stopped:
                tasks.patch_task_instance(DAG_ID, run_id, task_id, PatchTaskInstanceBody(new_state="failed"),
                                          _request_timeout=TIMEOUT_SECONDS)
            return stopped

        return self._call(fail_unfinished)

    def run_state(self, run_id: str) -> str:
        """queued, running, success or failed (also for a run Airflow no longer has: db clean, a deletion)."""
        from airflow_client.client import DagRunApi

        run = self._call(lambda api: DagRunApi(api).get_dag_run(DAG_ID, run_id, _request_timeout=TIMEOUT_SECONDS),
                         missing=None)
        return "failed" if run is None else str(getattr(run.state, "value", run.state))  # None: deleted, ended

    def stage_states(self, run_ids: list[str]) -> dict[str, dict[str, str | None]]:
        """Each task's state in each of these runs, in as few requests as Airflow's page size allows (one
        listing of jobs must not cost a request per job)."""
        from airflow_client.client import TaskInstanceApi, TaskInstancesBatchBody

        found: dict[str, dict[str, str | None]] = {run_id: {} for run_id in run_ids}
        offset, total = 0, 1
        while run_ids and offset < total:
            body = TaskInstancesBatchBody(dag_ids=[DAG_ID], dag_run_ids=run_ids, page_offset=offset, page_limit=100)
            page = self._call(lambda api, body=body: TaskInstanceApi(api).get_task_instances_batch(
                "~", "~", body, _request_timeout=TIMEOUT_SECONDS))
            for ti in page.task_instances:
                found[ti.dag_run_id][ti.task_id] = getattr(ti.state, "value", ti.state)
            offset, total = offset + len(page.task_instances), page.total_entries or 0
            if not page.task_instances:
                break
        return found

    def failure_reason(self, run_id: str, task_id: str) -> str | None:
        """What its last try's log ends with: the exception, or the message a LoraTaskError exits with (which
        names the fix); None when the log says nothing."""
        from airflow_client.client import TaskInstanceApi

        tries = self._call(lambda api: TaskInstanceApi(api).get_task_instance(
            DAG_ID, run_id, task_id, _request_timeout=TIMEOUT_SECONDS)).try_number
        raw = self._call(lambda api: TaskInstanceApi(api).get_log_without_preload_content(
            DAG_ID, run_id, task_id, max(tries, 1), _request_timeout=TIMEOUT_SECONDS))
        content = json.loads(raw.data).get("content", [])
        entries = [e for e in content if isinstance(e, dict) and e.get("level") == "error"]
        return next((reason for entry in reversed(entries) if (reason := _reason(entry))), None)

    def _call(self, request: Any, missing: Any = NOTHING) -> Any:
        """``request(api)``, logged in; Airflow's 404 returns ``missing`` where one is given."""
        import urllib3
        from airflow_client.client.exceptions import (
            ApiException,
            BadRequestException,
            NotFoundException,
            UnauthorizedException,
        )

        for attempt in range(2):
            try:
                return request(self._api(fresh=attempt > 0))
            except UnauthorizedException:
                continue  # an expired token: log in again, once
            except NotFoundException as exc:
                if missing is NOTHING:
                    raise AirflowUnavailable(f"Airflow at {self.url} answered {str(exc)[:300]}") from None
                return missing
            except BadRequestException as exc:
                raise ValueError(str(exc.body or exc.reason)) from None
            except (ApiException, OSError, urllib3.exceptions.HTTPError, ValueError) as exc:
                raise AirflowUnavailable(f"Airflow at {self.url} answered {str(exc)[:300]}") from None
        raise AirflowUnavailable(f"Airflow at {self.url} refuses the login {self.user!r}")

    def _api(self, fresh: bool) -> Any:
        import urllib3
        from airflow_client.client import ApiClient, Configuration

        with self._lock:
            if self._client is None or fresh:
                try:
                    response = urllib3.request("POST", f"{self.url}/auth/token", timeout=TIMEOUT_SECONDS,
                                               json={"username": self.user, "password": self.password})
                except urllib3.exceptions.HTTPError as exc:
                    raise AirflowUnavailable(f"Airflow at {self.url} does not answer ({exc})") from None
                if response.status not in (200, 201):
                    raise AirflowUnavailable(f"Airflow at {self.url} refuses the login {self.user!r} "
                                             f"(HTTP {response.status})")
                self._client = ApiClient(Configuration(host=self.url, access_token=response.json()["access_token"]))
            return self._client


def _reason(entry: dict[str, Any]) -> str | None:
    """The words of one error-level log event: an exception's value, a message the task exited with, or the
    event itself."""
    details = [d.get("exc_value") for d in entry.get("error_detail") or [] if d.get("exc_value")]
    if details:
        return str(details[-1])
    code = entry.get("exit_code")
    if isinstance(code, str) and not code.lstrip("-").isdigit():
        return code
    return None
