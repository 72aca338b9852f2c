"""lora_finetune: validate_request's refusals, and whole runs with dag.test() on the tiny model."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from lora_tasks.artifacts import open_store
from lora_tasks.errors import JobSpecError, LoraTaskError
from lora_tasks.ledger.models import StageTiming
from lora_tasks.ledger.store import open_ledger
from lora_tasks.publish import verify_version
from lora_tasks.settings import PlatformSettings, platform_settings
from lora_tasks.stages import validate_request

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def job(model: Path, dataset: Path, **changes: Any) -> dict[str, Any]:
    spec = {
        "job": {"name": "e2e-style", "tenant": "demo"},
        "dataset": {"uri": str(dataset), "trigger_word": "sks", "filter": {"min_side": 48},
                    "checks": {"min_side": 48, "min_images": 5}},
        "model_config": {"base_model": str(model), "lora_rank": 4},
        "training_config": {"batch_size": 2, "max_steps": 8, "learning_rate": 5e-3, "resolution": 64,
                            "save_steps": 4},
        "eval": {"max_loss_ratio": 1.5},
    }
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        spec.setdefault(section, {})[key] = value
    return spec


def validate(conf: dict[str, Any], user: str | None = "alice", roles: frozenset[str] = frozenset(),
             **settings: Any) -> dict[str, Any]:
    base = platform_settings().model_dump()
    return validate_request(conf, user, "manual__1", NOW, PlatformSettings(**{**base, **settings}), roles)


def test_a_good_request_is_resolved(tiny_model: Path, style_dataset: Path) -> None:
    info = validate({"job_spec": job(tiny_model, style_dataset), "priority": "interactive"})  # form fills gaps
    assert (info["tenant"], info["priority"], info["gpu_type"], info["pool"]) == ("demo", "interactive", "cpu",
                                                                                    "gpu_cpu")
    assert info["priority_weight"] == 100
    assert info["predicted_seconds"] > 0 and info["deadline"] is None  # what the off-peak wait reads
    [row] = [r for r in open_ledger(platform_settings().ledger_url).runs() if r.run_id == "manual__1"]
    assert row.predicted_seconds == info["predicted_seconds"] and row.features["images"] == 100  # assumed, for now
    spec = yaml.safe_load(Path(info["spec"]).read_text())
    assert spec["model_config"]["base_model"] == str(tiny_model)
    assert spec["output"]["uri"] == f"{info['workspace']}/train/output"
    assert Path(info["workspace"]).parts[-2:] == ("demo", "20261129T120000Z-" + info["run_key"].split("-")[-1])


def test_form_fields_alone_make_a_job(tiny_model: Path, style_dataset: Path) -> None:
    info = validate({"dataset_uri": str(style_dataset), "tenant": "demo", "job_name": "from-form",
                     "base_model": str(tiny_model), "priority": "batch", "lora_rank": 16})
    assert (info["name"], info["priority"], info["priority_weight"]) == ("from-form", "batch", 1)


@pytest.mark.parametrize(
    ("changes", "user", "error", "message"),
    [
        ({"job__tenant": "acme"}, "alice", LoraTaskError, "user 'alice' may not act for tenant 'acme'"),
        ({"job__tenant": "nobody-corp"}, "alice", LoraTaskError, "tenant 'nobody-corp' is not known"),
        ({"job__tenant": "../acme"}, "alice", JobSpecError, "'..' is not allowed"),
        ({"job__name": "a/b"}, "alice", JobSpecError, "job.name"),
        ({"job__gpu_type": "tpu-v9"}, "alice", LoraTaskError, "job.gpu_type 'tpu-v9' is not a GPU type"),
        ({"model_config__lora_rnak": 4}, "alice", JobSpecError, "did you mean 'lora_rank'"),
        ({"model_config__target_modules": ["query"]}, "alice", JobSpecError, "to_q, to_k, to_v, to_out.0"),
        ({"dataset__uri": ""}, "alice", LoraTaskError, "names no dataset"),
        ({"job__gpu_type": "t4", "training_config__batch_size": 64, "training_config__resolution": 1024}, "alice",
         LoraTaskError, "exceeds t4's 15 GiB"),
    ],
)
def test_bad_requests_fail_with_the_reason(tiny_model: Path, style_dataset: Path, changes: dict, user: str,
                                           error: type, message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate({"job_spec": job(tiny_model, style_dataset, **changes)}, user)


def test_a_role_named_by_the_tenant_lets_its_users_act(tiny_model: Path, style_dataset: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from lora_airflow.users import user_roles

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "root:admin,carol:user")
    acme = {"job_spec": job(tiny_model, style_dataset, job__tenant="acme")}
    assert user_roles("root") == {"admin"} and user_roles("carol") == {"user"} and user_roles(None) == set()
    assert validate(acme, "root", user_roles("root"))["tenant"] == "acme"
    with pytest.raises(LoraTaskError, match="user 'carol' may not act for tenant 'acme'"):
        validate(acme, "carol", user_roles("carol"))


def test_scheduled_runs_carry_no_user_and_kubernetes_needs_a_gpu(tiny_model: Path, style_dataset: Path) -> None:
    assert validate({"job_spec": job(tiny_model, style_dataset, job__tenant="acme")}, user=None)["tenant"] == "acme"
    with pytest.raises(LoraTaskError, match="has no GPU"):
        validate({"job_spec": job(tiny_model, style_dataset)}, runner="kubernetes")


def test_kubernetes_runs_need_files_their_pod_can_read(tiny_model: Path, style_dataset: Path) -> None:
    on_l4 = {"job_spec": job(tiny_model, style_dataset, job__gpu_type="l4")}
    with pytest.raises(LoraTaskError, match="is on this worker only"):
        validate(on_l4, runner="kubernetes")
    shared = Path(os.path.commonpath([tiny_model, style_dataset]))
    info = validate(on_l4, runner="kubernetes", shared_data=shared)
    assert info["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert info["resources"] == {"cpu": "4", "memory": "8Gi"} and info["gpu_product"] == "NVIDIA-L4"


@pytest.fixture(scope="module")
def finetune(airflow_db: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(REPO / "dags")).dags["lora_finetune"]


def results(run) -> dict[str, Any]:
    return {ti.task_id: (ti.state, ti.xcom_pull(task_ids=ti.task_id)) for ti in run.get_task_instances()}


@pytest.mark.slow
def test_a_job_runs_end_to_end(finetune, tiny_model: Path, style_dataset: Path) -> None:
    run = finetune.test(run_conf={"job_spec": job(tiny_model, style_dataset, job__priority="interactive")})
    outcome = results(run)
    assert run.state == "success", {k: v[0] for k, v in outcome.items()}
    train = next(ti for ti in run.get_task_instances() if ti.task_id == "train")
    assert (train.pool, train.priority_weight) == ("gpu_cpu", 100)  # set for this run by the policy hook
    info, published = outcome["validate_request"][1], outcome["publish"][1]
    store = open_store(platform_settings().artifact_root)
    manifest = verify_version(store, "demo", "e2e-style", published["version"])
    assert {"pytorch_lora_weights.safetensors", "e2e-style.safetensors", "job.yaml", "eval_report.json",
            "training_summary.json"} <= set(manifest["files"])
    assert manifest["eval"]["images"] >= 1 and manifest["eval"]["held_out"] is True
    assert manifest["run_id"] == run.run_id
    assert not Path(info["workspace"]).exists()  # cleaned up once published
    [billed] = [r for r in open_ledger(platform_settings().ledger_url).runs() if r.run_id == run.run_id]
    assert billed.status == "success" and billed.gpu_seconds > 0 and billed.actual_seconds > 0
    assert billed.predicted_seconds > 0 and billed.predicted_peak_bytes > 0 and billed.features["flops"] > 0
    with open_ledger(platform_settings().ledger_url).session() as session:
        stages = {t.stage for t in session.query(StageTiming).filter_by(run_id=run.run_id)}
    assert {"scan_dataset", "train", "evaluate", "publish"} <= stages
    assert all(outcome[s][1]["seconds"] >= 0 for s in ("scan_dataset", "train", "evaluate", "publish"))


@pytest.mark.slow
def test_failed_gate_publishes_nothing_and_keeps_the_workspace(finetune, tiny_model: Path,
                                                               style_dataset: Path) -> None:
    run = finetune.test(run_conf={"job_spec": job(tiny_model, style_dataset, eval__max_loss_ratio=0.01,
                                                  job__name="gated")})
    outcome = results(run)
    assert run.state == "failed"
    assert outcome["evaluate"][0] == "failed" and outcome["publish"][0] == "upstream_failed"
    assert outcome["cleanup"][0] == "success" and Path(outcome["cleanup"][1]["kept_workspace"]).exists()
    report = json.loads((Path(outcome["cleanup"][1]["kept_workspace"]) / "evaluate" / "eval_report.json").read_text())
    assert report["passed"] is False
    assert not open_store(platform_settings().artifact_root).list("tenants/demo/loras/gated")


@pytest.mark.slow
def test_bad_conf_fails_in_validate_request(finetune, tiny_model: Path, style_dataset: Path) -> None:
    run = finetune.test(run_conf={"job_spec": job(tiny_model, style_dataset, training_config__batch_size=0)})
    states = {k: v[0] for k, v in results(run).items()}
    assert run.state == "failed"
    assert states["validate_request"] == "failed" and states["scan_dataset"] == "upstream_failed"


@pytest.mark.slow
def test_failed_data_checks_stop_the_run_before_training(finetune, tiny_model: Path, style_dataset: Path) -> None:
    run = finetune.test(run_conf={"job_spec": job(tiny_model, style_dataset, dataset__checks={"min_images": 500},
                                                  job__name="too-few")})
    outcome = results(run)
    assert run.state == "failed"
    assert outcome["check_dataset"][0] == "failed" and outcome["train"][0] == "upstream_failed"
    workspace = Path(outcome["cleanup"][1]["kept_workspace"])
    report = (workspace / "check" / "report.txt").read_text()
    assert "kept samples" in report and "at least 500" in report
    assert not (workspace / "train").exists()
    [ledger_row] = [r for r in open_ledger(platform_settings().ledger_url).runs() if r.run_id == run.run_id]
    assert ledger_row.status == "failed" and ledger_row.gpu_seconds == 0
