"""Airflow's REST API through its official client (``apache-airflow-client``), the way a user's tools
talk to it: logged in with the auth manager's token; triggering a run, waiting for it, reading a result."""

from __future__ import annotations

from typing import Any

LOGIN_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 2.0


def airflow_api(base_url: str, username: str, password: str) -> Any:
    """An ``airflow_client.client.ApiClient`` carrying a bearer token from ``POST /auth/token``."""
    import urllib3
    from airflow_client.client import ApiClient, Configuration

    response = urllib3.request("POST", f"{base_url}/auth/token", json={"username": username, "password": password},
                               timeout=LOGIN_TIMEOUT_SECONDS)
    if response.status not in (200, 201):
        raise PermissionError(f"logging in to {base_url} as {username!r} failed: HTTP {response.status} "
                              f"{response.data[:300]!r}")
    return ApiClient(Configuration(host=base_url, access_token=response.json()["access_token"]))


def wait_for_run(api: Any, dag_id: str, run_id: str, timeout: float = 900) -> Any:
    """The run once it has succeeded or failed; TimeoutError if it is still going after ``timeout`` seconds."""
    from airflow_client.client import DagRunApi
    from tenacity import RetryError, retry, retry_if_result, stop_after_delay, wait_fixed

    @retry(retry=retry_if_result(lambda run: run.state not in ("success", "failed")), wait=wait_fixed(POLL_SECONDS),
           stop=stop_after_delay(timeout))
    def poll() -> Any:
        return DagRunApi(api).get_dag_run(dag_id, run_id)

    try:
        return poll()
    except RetryError:
        raise TimeoutError(f"{dag_id} run {run_id} did not finish in {timeout:.0f}s") from None


def wait_for_dag(api: Any, dag_id: str, timeout: float = 120) -> Any:
    """The DAG once the dag-processor has parsed it (404 until then)."""
    from airflow_client.client import DAGApi
    from airflow_client.client.exceptions import NotFoundException
    from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

    return retry(retry=retry_if_exception_type(NotFoundException), wait=wait_fixed(1), stop=stop_after_delay(timeout),
                 reraise=True)(DAGApi(api).get_dag)(dag_id)


def trigger_run(api: Any, dag_id: str, conf: dict[str, Any]) -> str:
    """A new run of ``dag_id`` with ``conf``; its run id. Refusals raise the client's ApiException (400 for a
    conf that breaks the DAG's params)."""
    from airflow_client.client import DagRunApi, TriggerDAGRunPostBody

    return DagRunApi(api).trigger_dag_run(dag_id, TriggerDAGRunPostBody(conf=conf, logical_date=None)).dag_run_id


def task_result(api: Any, dag_id: str, run_id: str, task_id: str) -> Any:
    """What a task returned (its ``return_value`` XCom)."""
    from airflow_client.client import XComApi

    entry = XComApi(api).get_xcom_entry(dag_id, task_id, run_id, "return_value", deserialize=True)
    return entry.actual_instance.value
