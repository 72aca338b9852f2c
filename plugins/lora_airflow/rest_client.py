"""Airflow's REST API through its official client (``apache-airflow-client``), the way a user's tools
talk to it: logged in with the auth manager's token, and waiting for a run to end."""

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
