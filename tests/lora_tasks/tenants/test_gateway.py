"""The gateway's own reading of Airflow's REST answers, through the real client against a loopback server
that answers as Airflow's api-server does: a run Airflow no longer has reads as ended (so it stops counting
against a quota instead of failing every submission), and the stages of many runs come from pages of one
batched listing."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import ClassVar

import pytest

from lora_tasks.tenants.gateway import AirflowGateway, AirflowUnavailable
from tests.json_handler import JsonHandler

TASKS = ["validate_request", "scan", "train", "publish"]


class FakeAirflow(JsonHandler):
    """/auth/token, GET one dag run (only ``known``), POST the task-instance batch (pages of 3)."""

    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.path.endswith("/dagRuns/known"):
            self.reply(200, {"dag_run_id": "known", "dag_id": "lora_finetune", "state": "queued", "run_type": "manual",
                              "run_after": "2026-12-01T00:00:00Z", "conf": {}, "dag_versions": [],
                              "dag_display_name": "lora_finetune", "bundle_version": None, "note": None,
                              "triggered_by": "rest_api", "triggering_user_name": "lora-gateway"})
        else:
            self.reply(404, {"detail": "The DagRun with dag_id: `lora_finetune` and run_id: `gone` was not found"})

    def do_POST(self) -> None:
        self.requests.append(self.path)
        body = self.body()
        if self.path == "/auth/token":
            self.reply(201, {"access_token": "t"})
            return
        every = [(run, task) for run in body["dag_run_ids"] for task in TASKS]
        page = every[body["page_offset"]:body["page_offset"] + 3]
        self.reply(200, {"total_entries": len(every), "task_instances": [instance(run, task) for run, task in page]})


def instance(run_id: str, task_id: str) -> dict:
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run_id}/{task_id}")), "task_id": task_id,
            "dag_id": "lora_finetune", "dag_run_id": run_id,
            "map_index": -1, "run_after": "2026-12-01T00:00:00Z", "try_number": 1, "max_tries": 0,
            "task_display_name": task_id, "dag_display_name": "lora_finetune", "pool": "default_pool",
            "pool_slots": 1, "executor_config": "{}", "state": "success" if task_id != "publish" else None,
            "dag_version": None}


@pytest.fixture
def gateway() -> Iterator[AirflowGateway]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAirflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeAirflow.requests = []
    yield AirflowGateway(f"http://127.0.0.1:{server.server_port}", "lora-gateway", "pw")
    server.shutdown()


def test_a_run_airflow_no_longer_has_reads_as_ended(gateway: AirflowGateway) -> None:
    assert gateway.run_state("known") == "queued"
    assert gateway.run_state("gone") == "failed"
    with pytest.raises(AirflowUnavailable, match="404"):
        gateway.failure_reason("gone", "train")  # elsewhere a 404 is still an error


def test_the_stages_of_many_runs_come_from_one_paged_listing(gateway: AirflowGateway) -> None:
    found = gateway.stage_states(["a", "b", "c"])
    assert found == {run: {"validate_request": "success", "scan": "success", "train": "success", "publish": None}
                     for run in "abc"}
    assert sum(path.endswith("/taskInstances/list") for path in FakeAirflow.requests) == 4  # 12 instances, 3 a page
