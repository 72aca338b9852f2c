"""Batch requests: the inbox, malformed requests, and a nightly run that submits nothing twice."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
import yaml

from lora_tasks.artifacts import LocalStore, open_store
from lora_tasks.batch import collect_requests, mark_submitted, submit_request
from lora_tasks.errors import LoraTaskError
from lora_tasks.settings import platform_settings

REPO = Path(__file__).resolve().parents[2]
SPEC = "job: {name: cats}\nmodel_config: {base_model: /models/sd15}\ndataset: {uri: s3://uploads/acme/cats}\n"


def fill(store) -> None:
    submit_request(store, "acme", SPEC, "cats.yaml")
    store.write("inbox/acme/broken.yaml", b"model_config: [unclosed\n")
    store.write("inbox/acme/wrong-tenant.yaml", b"job: {tenant: demo}\nmodel_config: {base_model: m}\n")
    store.write("inbox/demo/latin1.yaml", "model_config: {base_model: café}".encode("latin-1"))
    store.write("inbox/demo/README", b"not a spec")


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_collect_splits_good_from_bad(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="requests")
        store = open_store("s3://requests/platform", endpoint)
    else:
        store = LocalStore(tmp_path)
    fill(store)
    requests, rejected = collect_requests(store)
    assert [r.key for r in requests] == ["inbox/acme/cats.yaml"]
    assert requests[0].conf["job_spec"]["job"] == {"name": "cats", "tenant": "acme", "priority": "batch"}
    assert requests[0].run_id.startswith("batch__acme__cats__")
    assert sorted(rejected) == ["inbox/acme/broken.yaml", "inbox/acme/wrong-tenant.yaml", "inbox/demo/latin1.yaml"]
    assert b"not valid YAML" in store.read("rejected/acme/broken.yaml.rejected.txt")
    assert b"sits in 'acme'" in store.read("rejected/acme/wrong-tenant.yaml.rejected.txt")
    assert b"not UTF-8" in store.read("rejected/demo/latin1.yaml.rejected.txt")
    assert store.list("inbox") == ["inbox/acme/cats.yaml", "inbox/demo/README"]
    again, _ = collect_requests(store)
    assert again[0].run_id == requests[0].run_id  # same content, same run id
    mark_submitted(store, requests[0].key, requests[0].run_id)
    assert store.read("submitted/acme/cats.yaml.submitted.txt").decode().strip() == requests[0].run_id
    assert collect_requests(store) == ([], [])


def test_only_allowed_tenants_are_collected(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    fill(store)
    requests, rejected = collect_requests(store, allowed=lambda tenant: tenant == "demo")
    assert requests == [] and rejected == ["inbox/demo/latin1.yaml"]
    assert "inbox/acme/cats.yaml" in store.list("inbox") and "inbox/acme/broken.yaml" in store.list("inbox")


def test_submit_refuses_bad_specs_and_tenants(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(LoraTaskError, match="not a valid name"):
        submit_request(store, "../x", SPEC, "a.yaml")
    with pytest.raises(LoraTaskError, match="did you mean 'lora_rank'"):
        submit_request(store, "acme", SPEC.replace("base_model:", "lora_rnak: 4, base_model:"), "a.yaml")
    assert store.list("inbox") == []


@pytest.mark.slow
def test_nightly_run_submits_each_request_once(airflow_db: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    store = open_store(platform_settings().artifact_root)
    for name in ("night-a", "night-b"):
        submit_request(store, "demo", SPEC.replace("cats", name), f"{name}.yaml")
    store.write("inbox/demo/broken.yaml", b"{")
    submit_request(store, "acme", SPEC.replace("cats", "night-acme"), "night-acme.yaml")
    dag = DagBag(str(REPO / "dags")).dags["lora_nightly_batch"]
    first = dag.test()
    assert first.state == "success"

    def batch_runs() -> list[str]:
        with create_session() as session:
            return sorted(r.run_id for r in session.query(DagRun).filter(DagRun.dag_id == "lora_finetune")
                          if r.run_id.startswith("batch__demo__night"))

    created = batch_runs()
    assert len(created) == 2
    assert sorted(store.list("submitted/demo")) == sorted(
        [f"submitted/demo/{n}.yaml" for n in ("night-a", "night-b")]
        + [f"submitted/demo/{n}.yaml.submitted.txt" for n in ("night-a", "night-b")])
    assert store.exists("rejected/demo/broken.yaml.rejected.txt")
    # a crash between submitting and moving leaves a request in the inbox: it must not run twice
    store.write("inbox/demo/night-a.yaml", store.read("submitted/demo/night-a.yaml"))
    second = dag.test()
    assert second.state == "success"
    assert batch_runs() == created
    assert not store.list("inbox/demo")
    # dag.test() runs as the user 'dag_test', who may act for demo only: acme's request waits
    # for a scheduled run (which carries no user) instead of failing the tenant check as dag_test
    assert store.list("inbox/acme") == ["inbox/acme/night-acme.yaml"]
    conf = yaml.safe_dump(created)
    assert "night-a" in conf
