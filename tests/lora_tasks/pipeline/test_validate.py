"""validate_request: a run's request checked and resolved before any data is read."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from lora_tasks.errors import JobSpecError, LoraTaskError
from lora_tasks.ledger.store import open_ledger
from lora_tasks.pipeline.validate import validate_request
from lora_tasks.settings import PlatformSettings, platform_settings

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def job(model: Path, dataset: Path, **changes: Any) -> dict[str, Any]:
    spec = {
        "job": {"name": "e2e-style", "tenant": "demo"},
        "dataset": {"uri": str(dataset), "trigger_word": "sks", "filter": {"min_side": 48},
                    "checks": {"min_side": 48, "min_images": 5}},
        "model_config": {"base_model": str(model), "lora_rank": 4},
        "training_config": {"batch_size": 2, "max_steps": 24, "learning_rate": 5e-3, "resolution": 64,
                            "save_steps": 8},
    }  # the default quality gate: an adapter that makes held-out loss worse never publishes in a test
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        spec.setdefault(section, {})[key] = value
    return spec


def validate(conf: dict[str, Any], user: str | None = "operator", roles: frozenset[str] = frozenset(),
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
    assert spec["training_config"]["compare_at_end"] is False  # the evaluate stage compares, once
    assert Path(info["workspace"]).parts[-2:] == ("demo", "20261129T120000Z-" + info["run_key"].split("-")[-1])


def test_form_fields_alone_make_a_job(tiny_model: Path, style_dataset: Path) -> None:
    info = validate({"dataset_uri": str(style_dataset), "tenant": "demo", "job_name": "from-form",
                     "base_model": str(tiny_model), "priority": "batch", "lora_rank": 16})
    assert (info["name"], info["priority"], info["priority_weight"]) == ("from-form", "batch", 1)


@pytest.mark.parametrize(
    ("changes", "user", "error", "message"),
    [
        ({"job__tenant": "acme"}, "operator", LoraTaskError, "user 'operator' may not act for tenant 'acme'"),
        ({"job__tenant": "nobody-corp"}, "operator", LoraTaskError, "tenant 'nobody-corp' is not known"),
        ({"job__tenant": "../acme"}, "operator", JobSpecError, "'..' is not allowed"),
        ({"job__name": "a/b"}, "operator", JobSpecError, "job.name"),
        ({"job__gpu_type": "tpu-v9"}, "operator", LoraTaskError, "job.gpu_type 'tpu-v9' is not a GPU type"),
        ({"model_config__lora_rnak": 4}, "operator", JobSpecError, "did you mean 'lora_rank'"),
        ({"model_config__target_modules": ["query"]}, "operator", JobSpecError, "to_q, to_k, to_v, to_out.0"),
        ({"dataset__uri": ""}, "operator", LoraTaskError, "names no dataset"),
        ({"job__gpu_type": "t4", "training_config__batch_size": 64, "training_config__resolution": 1024}, "operator",
         LoraTaskError, "exceeds t4's 15 GiB"),
    ],
)
def test_bad_requests_fail_with_the_reason(tiny_model: Path, style_dataset: Path, changes: dict, user: str,
                                           error: type, message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate({"job_spec": job(tiny_model, style_dataset, **changes)}, user)


def test_a_missing_base_model_and_dataset_are_refused_together(tiny_model: Path, style_dataset: Path) -> None:
    missing = {"job_spec": job(tiny_model / "gone", style_dataset / "typo")}
    with pytest.raises(JobSpecError) as refused:
        validate(missing)
    assert str(refused.value).startswith("dag run conf has 2 problems:")
    assert [p.key for p in refused.value.problems] == ["dataset.uri", "model_config.base_model"]
    assert "typo' does not exist" in str(refused.value) and "gone' does not exist" in str(refused.value)


def test_a_role_named_by_the_tenant_lets_its_users_act(tiny_model: Path, acme_dataset: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from lora_airflow.users import user_roles

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "root:admin,carol:user")
    acme = {"job_spec": job(tiny_model, acme_dataset, job__tenant="acme")}
    assert user_roles("root") == {"admin"} and user_roles("carol") == {"user"} and user_roles(None) == set()
    assert validate(acme, "root", user_roles("root"))["tenant"] == "acme"
    with pytest.raises(LoraTaskError, match="user 'carol' may not act for tenant 'acme'"):
        validate(acme, "carol", user_roles("carol"))


def test_scheduled_runs_carry_no_user_and_kubernetes_needs_a_gpu(tiny_model: Path, style_dataset: Path,
                                                                 acme_dataset: Path) -> None:
    assert validate({"job_spec": job(tiny_model, acme_dataset, job__tenant="acme")}, user=None)["tenant"] == "acme"
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


def test_a_request_is_checked_without_torch_once_the_architecture_is_measured(tiny_model: Path,
                                                                               style_dataset: Path) -> None:
    """Twelve runs arriving at once must not each import torch and diffusers (seconds of CPU apiece) to
    estimate memory: the architecture's profile is measured once and kept in LORA_CACHE_DIR."""
    import json
    import subprocess
    import sys

    conf = {"job_spec": job(tiny_model, style_dataset)}
    validate(conf)  # measures the tiny architecture, if no test has yet
    script = ("import json, sys; from tests.lora_tasks.pipeline.test_validate import validate; "
              f"validate(json.loads({json.dumps(json.dumps(conf))})); "
              "print(json.dumps([m for m in ('torch', 'diffusers', 'great_expectations') if m in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[3],
                            env={**os.environ, "PYTHONPATH": f"plugins{os.pathsep}."})
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def queued_ledger(tmp_path: Path, now: datetime) -> str:
    """A ledger where tenant acme has three hours of standard work queued on the cpu type (max_count 1)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    for i in range(3):
        ledger.register_run(f"queued-{i}", tenant="acme", job="q", priority="standard", gpu_type="cpu",
                            submitted_at=now - timedelta(minutes=10 - i))
        ledger.record_prediction(f"queued-{i}", seconds=3600, low=3000, high=4200, peak_bytes=None, features={})
    return url


def admit(conf: dict[str, Any], url: str, now: datetime, **settings: Any) -> dict[str, Any]:
    base = platform_settings().model_dump()
    return validate_request(conf, "operator", "manual__late", now,
                            PlatformSettings(**{**base, "ledger_url": url, **settings}))


def test_a_batch_run_that_cannot_meet_its_deadline_is_refused_with_the_predicted_finish(
        tiny_model: Path, style_dataset: Path, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    url = queued_ledger(tmp_path, now)
    deadline = now + timedelta(hours=2)
    conf = {"job_spec": job(tiny_model, style_dataset, job__priority="batch", job__deadline=deadline.isoformat())}
    with pytest.raises(LoraTaskError, match="cannot be met: 3 queued job") as refused:
        admit(conf, url, now)
    assert "Fix: set job.deadline to" in str(refused.value) and "max_count of cpu" in str(refused.value)
    row = open_ledger(url).find_run("manual__late")
    assert row is not None and (row.status, row.admission) == ("refused", "refuse")
    assert row.predicted_start >= now + timedelta(hours=3) and row.predicted_finish > deadline  # behind the queue


def test_a_late_run_is_taken_when_its_tenants_policy_says_so_and_shows_its_later_finish(
        tiny_model: Path, style_dataset: Path, tmp_path: Path) -> None:
    from tests.conftest import TENANTS_FILE

    now = datetime.now(UTC)
    listing = yaml.safe_load(TENANTS_FILE.read_text())
    listing["tenants"]["demo"]["admission"] = {"batch": "accept"}
    (tmp_path / "tenants.yaml").write_text(yaml.safe_dump(listing))
    deadline = now + timedelta(hours=2)
    conf = {"job_spec": job(tiny_model, style_dataset, job__priority="batch", job__deadline=deadline.isoformat())}
    info = admit(conf, queued_ledger(tmp_path, now), now, tenants_file=tmp_path / "tenants.yaml")
    assert info["admission"]["outcome"] == "accept-later" and info["admission"]["ahead"] == 3
    assert datetime.fromisoformat(info["admission"]["predicted_finish"]) > deadline


def test_a_standard_run_is_promised_the_start_the_pool_will_give_it(tiny_model: Path, style_dataset: Path,
                                                                    tmp_path: Path) -> None:
    """Airflow's pool serves a class first come, first served: demo's run is promised a start after acme's three
    queued hours on the local pool's one slot (always up: no node start-up), and is taken late by default."""
    now = datetime.now(UTC)
    url = queued_ledger(tmp_path, now)
    conf = {"job_spec": job(tiny_model, style_dataset, job__deadline=(now + timedelta(hours=2)).isoformat())}
    info = admit(conf, url, now)
    assert info["admission"]["outcome"] == "accept-later" and info["admission"]["ahead"] == 3
    start = datetime.fromisoformat(info["admission"]["predicted_start"])
    assert abs(start - (now + timedelta(hours=3))) < timedelta(minutes=1)
    row = open_ledger(url).find_run("manual__late")
    assert row is not None and (row.admission, row.status) == ("accept-later", "submitted")
    assert row.predicted_start == start


def test_a_refused_run_retried_once_the_queue_has_drained_is_queued_again(tiny_model: Path, style_dataset: Path,
                                                                          tmp_path: Path) -> None:
    now = datetime.now(UTC)
    url = queued_ledger(tmp_path, now)
    conf = {"job_spec": job(tiny_model, style_dataset, job__priority="batch",
                            job__deadline=(now + timedelta(hours=2)).isoformat())}
    with pytest.raises(LoraTaskError, match="cannot be met"):
        admit(conf, url, now)
    ledger = open_ledger(url)
    for i in range(3):
        ledger.close_run(f"queued-{i}", "cancelled", now)  # acme cancels its queue
    assert admit(conf, url, now)["admission"]["outcome"] == "accept"  # the operator clears validate_request
    row = ledger.find_run("manual__late")
    assert row is not None and (row.status, row.finished_at, row.admission) == ("submitted", None, "accept")


def test_a_tenant_list_with_a_bad_admission_policy_is_refused(tmp_path: Path) -> None:
    from lora_tasks.pipeline.tenancy import load_tenants

    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump({"tenants": {"acme": {"admission": {"batch": "maybe", "urgent": "refuse"}}}}))
    with pytest.raises(LoraTaskError) as refused:
        load_tenants(path)
    assert "tenants.acme.admission.batch: 'maybe'" in str(refused.value)
    assert "tenants.acme.admission.urgent: 'refuse'" in str(refused.value) and "accept, refuse" in str(refused.value)
