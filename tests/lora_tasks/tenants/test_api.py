"""The tenant API on SQLite and PostgreSQL: each tenant sees its own jobs, adapters and bill; another's
ids answer 404, the same as ids that do not exist; no key, a revoked key and a malformed one answer 401."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lora_airflow.local_stack import free_port
from lora_tasks.ledger import Ledger
from lora_tasks.scheduling.windows import load_calendar
from lora_tasks.settings import PlatformSettings
from lora_tasks.tenants.__main__ import main
from lora_tasks.tenants.api import PREFIX, create_app

START = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)


def finished_job(ledger: Ledger, tenant: str, run_id: str, name: str) -> None:
    """A run trained for an hour on an L4 and published as ``name``."""
    ledger.register_run(run_id, tenant=tenant, job=name, priority="standard", gpu_type="l4", submitted_at=START)
    ledger.record_prediction(run_id, seconds=3000, low=2500, high=3500, peak_bytes=None, features={"steps": 24})
    ledger.record_stage(run_id, "train", 3600.0)
    ledger.attempt_started(run_id, 1, START)
    ledger.attempt_finished(run_id, 1, started_at=START, finished_at=START + timedelta(hours=1), succeeded=True,
                            peak_bytes=None, calendar=load_calendar())
    version = ledger.reserve_adapter_version(tenant, name, run_id, base_model="tiny-sd", formats=["diffusers"],
                                             created_at=START)
    ledger.mark_adapter_published(tenant, name, version, uri=f"file:///artifacts/{tenant}/{name}/v{version}",
                                  figures={"eval_loss_ratio": 0.7}, public=False, published_at=START)


@pytest.fixture
def api(ledger: Ledger, tmp_path: Path) -> tuple[TestClient, dict[str, str]]:
    finished_job(ledger, "acme", "run-acme-1", "cats")
    finished_job(ledger, "globex", "run-globex-1", "dogs")
    keys = {tenant: ledger.create_api_key(tenant, "test") for tenant in ("acme", "globex")}
    settings = PlatformSettings(ledger_url=ledger.url, artifact_root=str(tmp_path / "artifacts"),
                                gateway_url=f"http://127.0.0.1:{free_port()}")  # no Airflow: nothing is queued
    root = FastAPI()
    root.mount(PREFIX, create_app(settings))  # as the Airflow plugin mounts it
    return TestClient(root), keys


def get(client: TestClient, path: str, key: str | None, **params: str) -> tuple[int, dict]:
    response = client.get(PREFIX + path, params=params, headers={"Authorization": f"Bearer {key}"} if key else {})
    return response.status_code, response.json()


def test_each_tenant_sees_its_own_jobs_adapters_and_bill(api) -> None:
    client, keys = api
    status, body = get(client, "/jobs", keys["acme"])
    assert status == 200 and [j["job_id"] for j in body["jobs"]] == ["run-acme-1"]
    [job] = body["jobs"]
    assert job["status"] == "success" and job["gpu_seconds"] == 3600 and job["adapter"]["ref"] == "cats@1"
    assert job["stage_seconds"] == {"train": 3600.0} and job["finished_at"] == "2026-11-24T20:00:00+00:00"
    assert get(client, "/jobs/run-acme-1", keys["acme"])[1]["job"] == "cats"
    assert get(client, "/adapters", keys["acme"])[1]["adapters"] == [{"name": "cats", "latest": "cats@1",
                                                                      "versions": [1]}]
    status, adapter = get(client, "/adapters/cats", keys["acme"])
    assert status == 200 and adapter["versions"][0]["figures"] == {"eval_loss_ratio": 0.7}
    status, bill = get(client, "/bill", keys["acme"], month="2026-11")
    assert status == 200 and [line["job_id"] for line in bill["jobs"]] == ["run-acme-1"]
    assert bill["total"]["gpu_seconds"] == 3600 and bill["by_gpu_type"]["l4"]["gpu_seconds"] == 3600


@pytest.mark.parametrize("path", ["/jobs/run-globex-1", "/adapters/dogs"])
def test_another_tenants_ids_are_404_like_absent_ones(api, path: str) -> None:
    client, keys = api
    name = path.rsplit("/", 1)[1]
    other_status, other = get(client, path, keys["acme"])
    absent_status, absent = get(client, path.replace(name, "nothing-here"), keys["acme"])
    assert other_status == absent_status == 404
    assert other["detail"] == absent["detail"].replace("nothing-here", name)  # says no more than for an absent id
    assert "Fix:" in other["detail"]
    assert get(client, path, keys["globex"])[0] == 200  # its owner sees it


def test_a_bill_lists_the_callers_runs_only(api) -> None:
    client, keys = api
    assert [line["job_id"] for line in get(client, "/bill", keys["globex"], month="2026-11")[1]["jobs"]] == \
        ["run-globex-1"]
    assert get(client, "/bill", keys["acme"], month="2026-10")[1]["jobs"] == []


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/jobs"), ("GET", "/jobs/run-acme-1"), ("GET", "/adapters"), ("GET", "/adapters/cats"),
    ("GET", "/bill?month=2026-11"), ("POST", "/jobs"), ("DELETE", "/jobs/run-acme-1")])
def test_every_endpoint_wants_a_valid_key(api, ledger: Ledger, method: str, path: str) -> None:
    client, keys = api
    body = {"json": {"job_spec": {"job": {"name": "cats"}}}} if method == "POST" else {}
    assert client.request(method, PREFIX + path, **body).status_code == 401
    refusals = set()
    for header in ({"Authorization": "Bearer lora_not_a_key"}, {"Authorization": "Basic abc"},
                   {"X-API-Key": "x" * 300}):
        response = client.request(method, PREFIX + path, headers=header, **body)
        assert response.status_code == 401 and "Fix:" in response.json()["detail"]
        refusals.add(response.json()["detail"])
    [key_id] = [k.key_id for k in ledger.api_keys("acme")]
    ledger.revoke_api_key(key_id)
    response = client.request(method, PREFIX + path, headers={"X-API-Key": keys["acme"]}, **body)
    assert response.status_code == 401 and response.json()["detail"] in refusals  # no more said than for a fake
    assert len(ledger.submitted_runs("acme")) == 0 and ledger.tenant_run("acme", "run-acme-1").status == "success"


def test_a_bad_month_names_the_field_and_the_fix(api) -> None:
    client, keys = api
    status, body = get(client, "/bill", keys["acme"], month="2026-13")
    assert status == 422 and body["detail"] == "month: '2026-13' is not a month. Fix: ?month=YYYY-MM, such as " \
        "?month=2026-11"
    assert get(client, "/bill", keys["acme"])[1]["detail"].startswith("month is missing. Fix:")


def test_the_docs_are_under_the_prefix(api) -> None:
    client, _ = api
    assert client.get(f"{PREFIX}/docs").status_code == 200
    assert "/jobs" in client.get(f"{PREFIX}/openapi.json").json()["paths"]


def test_keys_are_made_listed_and_revoked_from_the_command_line(ledger: Ledger, capsys) -> None:
    assert main(["--url", ledger.url, "keys", "create", "--tenant", "acme", "--label", "ci"]) == 0
    key = capsys.readouterr().out.strip()
    assert ledger.tenant_for_api_key(key) == "acme"
    main(["--url", ledger.url, "keys", "list", "--tenant", "acme"])
    [listed] = capsys.readouterr().out.splitlines()
    key_id = listed.split()[0]
    assert main(["--url", ledger.url, "keys", "revoke", key_id]) == 0 and ledger.tenant_for_api_key(key) is None


def post(client: TestClient, key: str, body: dict, idempotency: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {key}", **({"Idempotency-Key": idempotency} if idempotency else {})}
    response = client.post(f"{PREFIX}/jobs", json=body, headers=headers)
    return response.status_code, response.json()


def spec(dataset: Path, **job: object) -> dict:
    return {"job_spec": {"job": {"name": "cats", **job}, "model_config": {"base_model": "org/some-model"}},
            "dataset_uri": str(dataset)}


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    """An upload under tenant acme's prefix (the tests' tenants file)."""
    from tests.conftest import UPLOADS

    folder = UPLOADS / "acme" / f"cats-{tmp_path.name}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize(("change", "words"), [
    ({"training_config": {"batch_size": 0}}, "training_config.batch_size"),
    ({"job": {"name": "cats", "tenant": "globex"}}, "job.tenant: 'globex' is not yours"),
    ({"modle_config": {}}, "modle_config"),
    ({"job": "cats"}, "job"),
])
def test_a_bad_job_is_refused_with_the_dags_own_words_before_airflow_hears_of_it(api, upload: Path, change: dict,
                                                                                 words: str) -> None:
    client, keys = api
    body = spec(upload)
    body["job_spec"].update(change)
    status, answer = post(client, keys["acme"], body)
    assert status == 422 and words in answer["detail"] and "Fix" in answer["detail"]


def test_a_dataset_outside_the_callers_prefix_is_refused(api, tmp_path: Path) -> None:
    client, keys = api
    status, answer = post(client, keys["acme"], spec(tmp_path))
    assert status == 422 and "is outside what tenant 'acme' may read" in answer["detail"]


def test_quotas_answer_429_with_the_reason(api, ledger: Ledger, upload: Path) -> None:
    client, keys = api
    ledger.register_run("queued-acme", tenant="acme", job="x", priority="standard", gpu_type="l4",
                        submitted_at=datetime.now(UTC))
    status, answer = post(client, keys["acme"], spec(upload))
    assert status == 429 and "concurrent jobs: 1 of yours are queued or running, your quota is 1" in answer["detail"]
    ledger.close_run("queued-acme", "failed", datetime.now(UTC))
    now = datetime.now(UTC).replace(microsecond=0)
    ledger.register_run("heavy-acme", tenant="acme", job="x", priority="standard", gpu_type="l4", submitted_at=now)
    ledger.attempt_started("heavy-acme", 1, now - timedelta(hours=11))
    ledger.attempt_finished("heavy-acme", 1, started_at=now - timedelta(hours=11), finished_at=now, succeeded=True,
                            peak_bytes=None, calendar=load_calendar())
    status, answer = post(client, keys["acme"], spec(upload))
    assert status == 429 and "GPU hours: 11.0 used in" in answer["detail"] and "your quota is 10" in answer["detail"]


def test_without_airflow_the_job_is_not_taken_and_a_retry_may_try_again(api, upload: Path) -> None:
    client, keys = api  # the settings point the gateway at nothing that answers
    for _ in range(2):
        status, answer = post(client, keys["acme"], spec(upload), idempotency="same-request")
        assert status == 503 and "cannot queue jobs right now" in answer["detail"]


def test_a_job_of_another_tenant_cannot_be_cancelled(api) -> None:
    client, keys = api
    response = client.delete(f"{PREFIX}/jobs/run-globex-1", headers={"X-API-Key": keys["acme"]})
    assert response.status_code == 404
    response = client.delete(f"{PREFIX}/jobs/run-acme-1", headers={"X-API-Key": keys["acme"]})
    assert response.status_code == 503  # its own: Airflow decides whether it still runs, and cannot be asked


def test_a_key_of_a_tenant_the_platform_does_not_know_is_refused(api, ledger: Ledger, upload: Path) -> None:
    client, _ = api
    status, answer = post(client, ledger.create_api_key("ghost"), spec(upload))
    assert status == 403 and "ghost" in answer["detail"] and "Fix" in answer["detail"]


def test_an_empty_x_api_key_does_not_hide_a_bearer_token(api) -> None:
    client, keys = api
    headers = {"X-API-Key": "", "Authorization": f"Bearer {keys['acme']}"}
    assert client.get(f"{PREFIX}/jobs", headers=headers).status_code == 200


def test_a_job_shows_its_training_step_and_loss_and_says_when_airflow_cannot_tell_its_stages(api) -> None:
    from lora_tasks.pipeline.workspace import run_key, train_output

    client, keys = api
    metrics = train_output(PlatformSettings().workspace / "acme" / run_key("run-acme-1", START)) / "metrics.jsonl"
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text('{"step": 11, "loss": 0.41}\n{"step": 12, "loss": 0.39}\n{"step": 13, "lo')  # torn last line
    status, job = get(client, "/jobs/run-acme-1", keys["acme"])
    assert status == 200 and job["progress"] == {"step": 12, "of": 24, "loss": 0.39}
    assert job["stages"] is None and "stage states unavailable" in job["note"]


def test_an_adapter_shows_its_model_card_and_sample_grid_to_its_owner_only(api, tmp_path: Path) -> None:
    from lora_tasks.stores import open_store
    from lora_tasks.stores.versions import published_file

    client, keys = api
    store = open_store(str(tmp_path / "artifacts"), None)
    grid = b"\x89PNG\r\n\x1a\n grid of cats"
    store.write(published_file("acme", "cats", 1, "sample_grid.png"), grid)
    store.write(published_file("acme", "cats", 1, "README.md"), b"---\nbase_model: tiny-sd\n---\n# cats")
    status, adapter = get(client, "/adapters/cats", keys["acme"])
    assert status == 200 and adapter["model_card"].endswith("# cats")
    assert adapter["sample_grid"] == f"{PREFIX}/adapters/cats/sample_grid.png?version=1"
    response = client.get(adapter["sample_grid"], headers={"X-API-Key": keys["acme"]})
    assert response.status_code == 200 and response.content == grid and response.headers["content-type"] == "image/png"
    assert client.get(adapter["sample_grid"], headers={"X-API-Key": keys["globex"]}).status_code == 404
    assert client.get(f"{PREFIX}/adapters/cats/sample_grid.png?version=7",
                      headers={"X-API-Key": keys["acme"]}).json()["detail"] == "'cats' has no version 7. Fix: one of 1"
    status, dogs = get(client, "/adapters/dogs", keys["globex"])  # published without a grid
    assert status == 200 and dogs["sample_grid"] is None and dogs["model_card"] is None
    response = client.get(f"{PREFIX}/adapters/dogs/sample_grid.png", headers={"X-API-Key": keys["globex"]})
    assert response.status_code == 404 and "without a sample grid" in response.json()["detail"]


def test_the_job_list_pages_newest_first_and_shows_jobs_airflow_has_not_started(api, ledger: Ledger) -> None:
    client, keys = api
    finished_job(ledger, "acme", "run-acme-2", "cats")
    assert ledger.claim_submission("acme", "queued-key") is None
    ledger.complete_submission("acme", "queued-key", "run-acme-queued")  # taken; its first stage has not run
    status, body = get(client, "/jobs", keys["acme"])
    assert status == 200 and body["total"] == 3
    assert (body["jobs"][0]["job_id"], body["jobs"][0]["status"]) == ("run-acme-queued", "submitted")
    assert all("stage states unavailable" in j["note"] and "progress" in j for j in body["jobs"][1:])
    _, page = get(client, "/jobs", keys["acme"], limit="1", offset="1")
    assert [j["job_id"] for j in page["jobs"]] == [body["jobs"][1]["job_id"]] and page["total"] == 3
    _, other = get(client, "/jobs", keys["globex"])
    assert [j["job_id"] for j in other["jobs"]] == ["run-globex-1"]
    status, bad = get(client, "/jobs", keys["acme"], limit="1000")
    assert status == 422 and bad["detail"].startswith("limit:")
