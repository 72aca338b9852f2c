"""lora_nightly_batch: a scheduled run submits each inbox request once, and moves it to submitted/."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lora_tasks.pipeline.batch import submit_request
from lora_tasks.settings import platform_settings
from lora_tasks.stores import open_store
from tests.lora_tasks.pipeline.test_batch import SPEC

REPO = Path(__file__).resolve().parents[2]


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
