"""Real Airflow on loopback (api-server, scheduler, dag-processor, triggerer; LocalExecutor; the
machine's PostgreSQL when it answers, SQLite otherwise), driven over HTTP as a user would."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from airflow_client.client import (
    PatchTaskInstanceBody,
    PoolApi,
    PoolPatchBody,
    TaskInstanceApi,
)
from airflow_client.client.exceptions import ApiException
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from lora_airflow.local_stack import (
    DEMO_DATASET,
    AirflowConfig,
)
from lora_airflow.rest_client import task_result, trigger_run, wait_for_dag, wait_for_run
from lora_tasks.pipeline.workspace import train_output
from lora_tasks.stores import open_store
from lora_tasks.stores.versions import verify_version
from tests.conftest import UPLOADS
from tests.e2e.helpers import DAG, client, conf, log_text, states

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_an_operator_trains_for_a_tenant_over_http(airflow: AirflowConfig, tiny_model: Path,
                                                    style_dataset: Path) -> None:
    operator = client(airflow, "operator")
    wait_for_dag(operator, DAG)
    run = wait_for_run(operator, DAG, trigger_run(operator, DAG, conf(tiny_model, style_dataset)))
    assert run.state == "success", {k: v.state for k, v in states(operator, run.dag_run_id).items()}
    assert run.triggering_user_name == "operator"
    admin = client(airflow, "admin")
    for task_id in states(operator, run.dag_run_id):  # progress bars and library chatter are not errors
        errors = [line for line in log_text(admin, run.dag_run_id, task_id).splitlines() if line.startswith("error:")]
        assert not errors, (task_id, errors)
    published = task_result(operator, DAG, run.dag_run_id, "publish")
    manifest = verify_version(open_store(airflow.extra["artifacts"]), "demo", "api-style", published["version"])
    assert "pytorch_lora_weights.safetensors" in manifest["files"]


def test_schema_violations_are_refused_at_trigger_time(airflow: AirflowConfig) -> None:
    with pytest.raises(ApiException) as refused:
        trigger_run(client(airflow, "operator"), DAG, {"lora_rank": 0})
    assert refused.value.status == 400
    assert "lora_rank" in refused.value.body and "minimum" in refused.value.body


@pytest.mark.parametrize(
    ("user", "changes", "message"),
    [
        ("operator", {"model_config": {"lora_rnak": 4}}, "did you mean 'lora_rank'"),
        ("operator", {"job": {"tenant": "acme"}}, "user 'operator' may not act for tenant 'acme'"),
        ("admin", {"dataset": {"uri": "{artifacts}/tenants/demo"}}, "is inside the artifact store"),
    ],
)
def test_bad_requests_fail_in_validate_request(airflow: AirflowConfig, tiny_model: Path, style_dataset: Path,
                                               user: str, changes: dict, message: str) -> None:
    """Refused at once, and the log says why once, in one line, at the end: no traceback."""
    api = client(airflow, user)
    body = conf(tiny_model, style_dataset)
    for section, values in changes.items():
        body["job_spec"][section].update({k: v.format(**airflow.extra) if isinstance(v, str) else v
                                          for k, v in values.items()})
    run = wait_for_run(api, DAG, trigger_run(api, DAG, body), timeout=300)
    tasks = states(api, run.dag_run_id)
    assert run.state == "failed"
    assert tasks["validate_request"].state == "failed" and tasks["validate_request"].try_number == 1
    assert tasks["scan_dataset"].state == "upstream_failed"
    log = log_text(client(airflow, "admin"), run.dag_run_id, "validate_request")
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], log
    assert "Traceback" not in log and "InputNeedsFixing" not in log and "error_detail" not in log, log


def test_a_viewer_cannot_trigger(airflow: AirflowConfig) -> None:
    with pytest.raises(ApiException) as refused:
        trigger_run(client(airflow, "viewer"), DAG, {})
    assert refused.value.status == 403


def test_a_stage_failed_from_outside_fails_the_run(airflow: AirflowConfig, tiny_model: Path,
                                                   style_dataset: Path) -> None:
    """Another operator marks train failed while it trains: the run ends failed, nothing is published."""
    api, admin = client(airflow, "operator"), client(airflow, "admin")
    body = conf(tiny_model, style_dataset, name="stopped-from-outside")
    body["job_spec"]["training_config"].update(max_steps=5000, save_steps=5000)
    run_id = trigger_run(api, DAG, body)

    @retry(retry=retry_if_result(lambda state: state != "running"), wait=wait_fixed(1), stop=stop_after_delay(300))
    def training() -> str | None:
        return states(api, run_id)["train"].state

    training()
    TaskInstanceApi(admin).patch_task_instance(DAG, run_id, "train", PatchTaskInstanceBody(new_state="failed"))
    run = wait_for_run(api, DAG, run_id, timeout=300)
    tasks = states(api, run_id)
    assert run.state == "failed", {k: v.state for k, v in tasks.items()}
    assert (tasks["train"].state, tasks["publish"].state, tasks["outcome"].state) == (
        "failed", "upstream_failed", "failed")
    assert tasks["cleanup"].state == "success"
    assert not open_store(airflow.extra["artifacts"]).list("tenants/demo/loras/stopped-from-outside")
    assert "Fix: read the log of train" in log_text(admin, run_id, "outcome")


def readme_walkthrough() -> str:
    """The README's REST walkthrough, verbatim: the bash block after its marker comment."""
    readme = (REPO / "README.md").read_text()
    [block] = re.findall(r"<!-- tested: tests/e2e/test_airflow_api.py -->\n```bash\n(.*?)```", readme, re.S)
    return block


def test_the_readme_walkthrough_publishes_with_the_forms_defaults(airflow: AirflowConfig) -> None:
    """Every curl command of the README, through the shell, as printed; only the URL comes from here."""
    from airflow_client.client import DAGApi

    form = DAGApi(client(airflow, "operator")).get_dag_details(DAG).params
    assert form["dataset_uri"]["value"] == str(DEMO_DATASET) and "min_side: 48" in form["job_spec"]["value"]
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_walkthrough()], capture_output=True, text=True,
                            timeout=900, env={**os.environ, "AIRFLOW": airflow.base_url}, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "state: success" in result.stdout, result.stdout
    published = json.loads(result.stdout[result.stdout.index("{"):])
    manifest = verify_version(open_store(airflow.extra["artifacts"]), "demo", "my-first-lora", published["version"])
    assert "pytorch_lora_weights.safetensors" in manifest["files"]


def test_interactive_trains_first(airflow: AirflowConfig, tiny_model: Path, style_dataset: Path) -> None:
    """One GPU slot, three runs queued for it: they train in priority order, not arrival order."""
    admin = client(airflow, "admin")

    def set_slots(slots: int) -> None:
        pool = PoolApi(admin).patch_pool("gpu_cpu", PoolPatchBody(pool="gpu_cpu", slots=slots, include_deferred=True),
                                         update_mask=["slots"])
        assert pool.slots == slots

    slots = PoolApi(admin).get_pool("gpu_cpu").slots
    set_slots(0)
    runs = {}
    for priority in ("batch", "standard", "interactive"):  # arrival order: worst first
        body = conf(tiny_model, style_dataset, name=f"order-{priority}", priority=priority)
        runs[priority] = trigger_run(admin, DAG, body)

    @retry(retry=retry_if_result(lambda trains: set(trains.values()) != {"scheduled"}), wait=wait_fixed(2),
           stop=stop_after_delay(600), retry_error_callback=lambda state: state.outcome.result())
    def trains() -> dict[str, Any]:
        return {p: states(admin, r)["train"].state for p, r in runs.items()}

    waiting = trains()
    assert set(waiting.values()) == {"scheduled"}, waiting
    set_slots(1)
    try:
        for run_id in runs.values():
            assert wait_for_run(admin, DAG, run_id).state == "success"
    finally:
        set_slots(slots)  # the stack is shared with the tests that follow
    started = {p: states(admin, r)["train"].start_date for p, r in runs.items()}
    assert started["interactive"] < started["standard"] < started["batch"], started


def test_capacity_decisions_set_pool_slots_and_placeholders(airflow: AirflowConfig) -> None:
    """In Kubernetes mode: the GPU pool gets the ready GPUs (real Airflow API), the placeholder
    deployment the GPUs wanted beyond the running jobs (Kubernetes API stand-in on loopback)."""
    import kubernetes_validate
    from kubernetes import client as k8s

    from lora_airflow.fleet import apply_kubernetes
    from lora_tasks.settings import PlatformSettings
    from tests.e2e.kube_api import KubeApi, gpu_node

    cluster = KubeApi([gpu_node("l4-a", "NVIDIA-L4", 4), gpu_node("l4-b", "NVIDIA-L4", 4),
                       gpu_node("l4-booting", "NVIDIA-L4", 4, ready=False), gpu_node("t4-a", "Tesla-T4", 1)])
    api = k8s.ApiClient(k8s.Configuration(host=cluster.url))
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    settings = PlatformSettings(runner="kubernetes", k8s_namespace="lora-training")
    admin = client(airflow, "admin")
    try:
        first = apply_kubernetes([{"gpu_type": "l4", "applied": 6, "running": 2}], settings, core, apps, admin)
        assert (first[0]["pool_slots"], first[0]["placeholders"]) == (8, 4)
        for name in ("gpu_l4", "gpu_l4_interactive"):
            pool = PoolApi(admin).get_pool(name)
            assert pool.slots == 8 and pool.include_deferred is True
        created = cluster.deployments[("lora-training", "lora-placeholder-l4")]
        kubernetes_validate.validate(created, "1.30", strict=True)
        assert created["spec"]["replicas"] == 4
        assert created["spec"]["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
        apply_kubernetes([{"gpu_type": "l4", "applied": 3, "running": 3}], settings, core, apps, admin)
        assert created["spec"]["replicas"] == 0  # scaled down in place, not created again
        assert [r for r in cluster.requests if r[0] == "POST"] == [
            ("POST", "/apis/apps/v1/namespaces/lora-training/deployments")]
    finally:
        for name in ("gpu_l4", "gpu_l4_interactive"):
            PoolApi(admin).patch_pool(name, PoolPatchBody(pool=name, slots=8, include_deferred=True),
                                      update_mask=["slots"])
        cluster.shutdown()


def test_the_tenant_api_is_mounted_in_the_api_server(airflow: AirflowConfig) -> None:
    """The plugin's fastapi_apps puts /lora/v1 beside Airflow's own API; keys, not Airflow logins, open it."""
    import httpx

    from lora_tasks.ledger.store import open_ledger

    ledger = open_ledger(airflow.extra["ledger"])
    ledger.register_run("tenant-api-probe", tenant="acme", job="probe", priority="standard", gpu_type="cpu",
                        submitted_at=datetime.now(UTC))
    acme, demo = (ledger.create_api_key(t, "e2e") for t in ("acme", "demo"))
    base = f"{airflow.base_url}/lora/v1"
    seen = httpx.get(f"{base}/jobs", headers={"Authorization": f"Bearer {acme}"}, timeout=30)
    assert seen.status_code == 200 and [j["job_id"] for j in seen.json()["jobs"]] == ["tenant-api-probe"]
    demo_jobs = httpx.get(f"{base}/jobs", headers={"X-API-Key": demo}, timeout=30).json()["jobs"]
    assert "tenant-api-probe" not in {j["job_id"] for j in demo_jobs}
    assert httpx.get(f"{base}/jobs/tenant-api-probe", headers={"X-API-Key": demo}, timeout=30).status_code == 404
    assert httpx.get(f"{base}/jobs", timeout=30).status_code == 401
    assert httpx.get(f"{base}/docs", timeout=30).status_code == 200


def test_a_tenant_submits_watches_and_cancels_through_the_tenant_api(airflow: AirflowConfig, tiny_model: Path,
                                                                     style_dataset: Path) -> None:
    """POST /lora/v1/jobs triggers lora_finetune as the service identity; the same Idempotency-Key gives the
    same job; the job trains and its adapter shows; DELETE stops a running job and its bill."""
    import httpx

    from lora_tasks.ledger.store import open_ledger

    ledger = open_ledger(airflow.extra["ledger"])
    headers = {"Authorization": f"Bearer {ledger.create_api_key('demo', 'e2e')}"}
    base = f"{airflow.base_url}/lora/v1"
    body = {"job_spec": {**conf(tiny_model, style_dataset)["job_spec"], "job": {"name": "via-api"}}}
    body["job_spec"].pop("dataset")
    body["dataset_uri"] = str(style_dataset)
    body["job_spec"]["dataset"] = {"trigger_word": "sks", "filter": {"min_side": 48},
                                   "checks": {"min_side": 48, "min_images": 5}}
    archive = io.BytesIO()  # the dataset sent along with the job, as a tenant without a shared folder does
    with zipfile.ZipFile(archive, "w") as packed:
        for file in sorted(f for f in style_dataset.rglob("*") if f.is_file()):
            packed.write(file, file.relative_to(style_dataset).as_posix())
    uploads = UPLOADS / "demo" / "api-uploads"
    before = set(uploads.glob("*")) if uploads.exists() else set()

    def send() -> httpx.Response:
        return httpx.post(f"{base}/jobs", headers={**headers, "Idempotency-Key": "k1"}, timeout=60,
                          data={"job_spec": json.dumps(body["job_spec"])},
                          files={"dataset": ("style.zip", archive.getvalue(), "application/zip")})

    first = send()
    assert first.status_code == 201, first.text
    again = send()
    assert (again.status_code, again.json()["job_id"]) == (200, first.json()["job_id"])
    [stored] = set(uploads.glob("*")) - before  # one copy, under the caller's prefix: the retry's was removed
    job_id = first.json()["job_id"]
    operator = client(airflow, "operator")
    run = wait_for_run(operator, DAG, job_id)
    failed = [t for t, ti in states(operator, job_id).items() if ti.state == "failed"]
    assert run.state == "success", {t: log_text(operator, job_id, t)[-2000:] for t in failed}
    assert run.triggering_user_name == "lora-gateway"
    assert run.conf["job_spec"]["dataset"]["uri"] == stored.as_uri()
    seen = httpx.get(f"{base}/jobs/{job_id}", headers=headers, timeout=30).json()
    assert seen["status"] == "success" and seen["adapter"]["ref"].startswith("via-api@")
    assert seen["progress"]["step"] == seen["progress"]["of"] == 24 and "failure" not in seen
    assert seen["stages"]["train"] == seen["stages"]["publish"] == "success"
    listed = httpx.get(f"{base}/jobs", headers=headers, params={"limit": 5}, timeout=30).json()["jobs"]
    assert [(j["stages"], j["progress"]) for j in listed if j["job_id"] == job_id] == [(seen["stages"],
                                                                                        seen["progress"])]

    refused = {**body, "job_spec": {**body["job_spec"], "job": {"name": "too-few"},
                                    "dataset": {**body["job_spec"]["dataset"], "checks": {"min_images": 500}}}}
    failing = httpx.post(f"{base}/jobs", json=refused, headers=headers, timeout=60).json()["job_id"]
    assert wait_for_run(operator, DAG, failing).state == "failed"
    failure = httpx.get(f"{base}/jobs/{failing}", headers=headers, timeout=30).json()["failure"]
    assert failure["stage"] == "check_dataset" and "kept samples: 12 kept, at least 500 needed" in failure["reason"]
    listed = httpx.get(f"{base}/jobs", headers=headers, timeout=30).json()["jobs"]
    assert [(j["status"], j["failure"]) for j in listed if j["job_id"] == failing] == [("failed", failure)]
    assert httpx.delete(f"{base}/jobs/{job_id}", headers=headers, timeout=30).status_code == 409

    long = {**body, "job_spec": {**body["job_spec"], "job": {"name": "cancelled"},
                                 "training_config": {**body["job_spec"]["training_config"], "max_steps": 5000}}}
    cancelled = httpx.post(f"{base}/jobs", json=long, headers=headers, timeout=60).json()["job_id"]
    wait_until_training(operator, cancelled)
    stopped = httpx.delete(f"{base}/jobs/{cancelled}", headers=headers, timeout=60)
    assert stopped.status_code == 200 and stopped.json()["status"] == "cancelled"
    assert wait_for_run(operator, DAG, cancelled, timeout=120).state == "failed"
    [row] = [r for r in ledger.runs(tenant="demo") if r.run_id == cancelled]
    assert row.status == "cancelled"
    output = train_output(task_result(operator, DAG, cancelled, "validate_request")["workspace"])

    @retry(retry=retry_if_result(bool), wait=wait_fixed(1), stop=stop_after_delay(60),
           retry_error_callback=lambda state: state.outcome.result())
    def trainers() -> list[str]:  # Airflow kills the task at its next heartbeat, which stops the trainer
        return [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])
                if str(output) in " ".join(p.info["cmdline"] or [])]

    assert trainers() == []
    metrics = output / "metrics.jsonl"
    written = metrics.stat().st_size if metrics.exists() else 0
    time.sleep(3)
    assert (metrics.stat().st_size if metrics.exists() else 0) == written


def wait_until_training(api: Any, run_id: str, timeout: float = 300) -> None:
    @retry(retry=retry_if_result(lambda state: state != "running"), wait=wait_fixed(1), stop=stop_after_delay(timeout))
    def train_state() -> str | None:
        return states(api, run_id).get("train").state if "train" in states(api, run_id) else None

    train_state()
