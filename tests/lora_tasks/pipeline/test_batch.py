"""Batch requests: the inbox, malformed requests, and a nightly run that submits nothing twice."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from lora_tasks.errors import LoraTaskError
from lora_tasks.pipeline.batch import collect_requests, mark_submitted, submit_request
from lora_tasks.stores import open_store
from lora_tasks.stores.local import LocalStore

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


