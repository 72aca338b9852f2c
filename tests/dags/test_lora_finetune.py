"""lora_finetune: validate_request's refusals, and whole runs with dag.test() on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lora_tasks.ledger.models import StageTiming
from lora_tasks.ledger.store import open_ledger
from lora_tasks.settings import platform_settings
from lora_tasks.stores import open_store
from lora_tasks.stores.versions import verify_version
from tests.lora_tasks.pipeline.test_validate import job

REPO = Path(__file__).resolve().parents[2]


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
    assert outcome["outcome"] == ("success", {"state": "success"})
    train = next(ti for ti in run.get_task_instances() if ti.task_id == "train")
    assert (train.pool, train.priority_weight) == ("gpu_cpu", 100)  # set for this run by the policy hook
    info, published = outcome["validate_request"][1], outcome["publish"][1]
    store = open_store(platform_settings().artifact_root)
    manifest = verify_version(store, "demo", "e2e-style", published["version"])
    assert {"pytorch_lora_weights.safetensors", "e2e-style.safetensors", "job.yaml", "eval_report.json",
            "training_summary.json", "README.md", "sample_grid.png", "loss_curve.png"} <= set(manifest["files"])
    assert any(name.startswith("samples/") for name in manifest["files"])
    assert manifest["figures"]["eval_loss_ratio"] <= 1.02 and manifest["run_id"] == run.run_id
    report = json.loads(store.read(f"tenants/demo/loras/e2e-style/{published['version']}/eval_report.json"))
    assert report["images"] >= 1 and report["held_out"] is True and report["samples"]
    latest = open_ledger(platform_settings().ledger_url).resolve_adapter("demo", "e2e-style@latest")
    assert (latest.ref, latest.uri) == (published["ref"], published["uri"])
    assert not Path(info["workspace"]).exists()  # cleaned up once published
    [billed] = [r for r in open_ledger(platform_settings().ledger_url).runs() if r.run_id == run.run_id]
    assert billed.status == "success" and billed.gpu_seconds > 0 and billed.actual_seconds > 0
    assert billed.predicted_seconds > 0 and billed.predicted_peak_bytes > 0 and billed.features["flops"] > 0
    with open_ledger(platform_settings().ledger_url).session() as session:
        recorded = {t.stage: t.seconds for t in session.query(StageTiming).filter_by(run_id=run.run_id)}
    stages = ("validate_request", "scan_dataset", "filter_content", "caption", "check_dataset", "train", "evaluate",
              "publish")
    assert recorded == {s: outcome[s][1]["seconds"] for s in stages}  # what each stage measured, as it measured it
    assert outcome["train"][1]["seconds"] > outcome["train"][1]["steps"] * outcome["train"][1]["median_step_seconds"]


@pytest.mark.slow
def test_a_text_job_runs_end_to_end(finetune, tiny_llm: Path, voice_dataset: Path) -> None:
    spec = {"job": {"name": "e2e-voice", "tenant": "demo", "task": "text", "priority": "interactive"},
            "dataset": {"uri": str(voice_dataset)},
            "model_config": {"base_model": str(tiny_llm), "lora_rank": 8},
            "training_config": {"batch_size": 4, "max_steps": 60, "learning_rate": 1e-2, "save_steps": 20},
            "eval": {"max_new_tokens": 16}, "output": {"merged": True}}
    run = finetune.test(run_conf={"job_spec": spec})
    outcome = results(run)
    assert run.state == "success", {k: v[0] for k, v in outcome.items()}
    published = outcome["publish"][1]
    store = open_store(platform_settings().artifact_root)
    manifest = verify_version(store, "demo", "e2e-voice", published["version"])
    assert {"adapter_model.safetensors", "adapter_config.json", "job.yaml", "eval_report.json",
            "training_summary.json", "README.md", "loss_curve.png", "merged/model.safetensors",
            "merged/tokenizer.json"} <= set(manifest["files"])
    report = json.loads(store.read(f"tenants/demo/loras/e2e-voice/{published['version']}/eval_report.json"))
    assert report["held_out"] and report["lora_perplexity"] < report["base_perplexity"] and report["generations"]
    card = store.read(f"tenants/demo/loras/e2e-voice/{published['version']}/README.md").decode()
    assert "PeftModel.from_pretrained" in card and "text-generation" in card
    [billed] = [r for r in open_ledger(platform_settings().ledger_url).runs() if r.run_id == run.run_id]
    assert billed.status == "success" and billed.gpu_seconds > 0 and billed.tenant == "demo"


@pytest.mark.slow
def test_failed_gate_publishes_nothing_and_keeps_the_workspace(finetune, tiny_model: Path,
                                                               style_dataset: Path) -> None:
    run = finetune.test(run_conf={"job_spec": job(tiny_model, style_dataset, eval__max_loss_ratio=0.01,
                                                  job__name="gated")})
    outcome = results(run)
    assert run.state == "failed"
    assert outcome["evaluate"][0] == "failed" and outcome["publish"][0] == "upstream_failed"
    assert outcome["outcome"][0] == "failed"  # the verdict, not the successful teardown, decides
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
