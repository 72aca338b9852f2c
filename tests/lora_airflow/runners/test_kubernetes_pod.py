"""The Kubernetes runner's pod, built offline as the provider's own tests do, then validated
against the Kubernetes schema and against our rules (GPU, placement, priority, hardening, secrets)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import kubernetes_validate
import pytest
import yaml

from lora_tasks.pipeline.training import train_command
from lora_tasks.pipeline.workspace import RunInfo
from lora_tasks.settings import PlatformSettings

REPO = Path(__file__).resolve().parents[3]
WORKSPACE = Path("/srv/lora/workspace")
INFO = {"tenant": "acme", "name": "cats", "priority": "interactive", "gpu_type": "l4", "run_key": "20261129T0000Z-ab",
        "workspace": f"{WORKSPACE}/acme/20261129T0000Z-ab",
        "spec": f"{WORKSPACE}/acme/20261129T0000Z-ab/validate/job.yaml",
        "resources": {"cpu": "4", "memory": "14Gi"}, "gpu_product": "NVIDIA-L4",
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "pool", "operator": "Equal", "value": "l4-spot", "effect": "NoExecute",
                         "tolerationSeconds": 300}]}
SHARED = Path("/srv/lora/data")
CHECKED = {"train": f"{WORKSPACE}/acme/20261129T0000Z-ab/check/train.jsonl"}


class FakeTaskInstance:
    dag_id, task_id, map_index, try_number = "lora_finetune", "train", -1, 1

    def xcom_pull(self, task_ids: str, **_: Any) -> dict[str, Any]:
        return {"validate_request": INFO, "check_dataset": CHECKED}[task_ids]


@pytest.fixture(scope="module")
def operator():
    from airflow.sdk import DAG

    from lora_airflow.runners.kubernetes_pod import training_pod_operator

    settings = PlatformSettings(runner="kubernetes", workspace=WORKSPACE, trainer_image="registry/lora-trainer:0.1.0",
                                shared_data=SHARED)
    with DAG("lora_finetune", schedule=None):
        return training_pod_operator(settings)


@pytest.fixture(scope="module")
def manifest(operator) -> dict[str, Any]:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes.client import ApiClient

    context = {"ti": FakeTaskInstance(), "run_id": "manual__2026-11-29T00:00:00+00:00", "dag": operator.dag}
    operator.render_template_fields(context)
    operator.name = operator._set_name(operator.name)  # what execute() does before building
    with mock.patch.object(KubernetesHook, "_get_default_client"), \
            mock.patch.object(KubernetesHook, "is_in_cluster", new_callable=mock.PropertyMock, return_value=False):
        pod = operator.build_pod_request_obj(context)
    return ApiClient().sanitize_for_serialization(pod)


@pytest.mark.parametrize("version", ["1.30", "1.37"])
def test_pod_is_valid_kubernetes(manifest: dict[str, Any], version: str) -> None:
    assert kubernetes_validate.validate(manifest, version, strict=True) == version


def test_runs_the_trainer_on_the_shared_workspace(manifest: dict[str, Any]) -> None:
    container = manifest["spec"]["containers"][0]
    assert container["image"] == "registry/lora-trainer:0.1.0"
    assert [*container["command"], *container["args"]] == train_command(RunInfo.of(INFO), CHECKED["train"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in manifest["spec"]["volumes"]}
    assert volumes[mounts[str(WORKSPACE)]]["persistentVolumeClaim"]["claimName"] == "lora-workspace"
    assert "emptyDir" in volumes[mounts["/tmp"]]
    shared = next(m for m in container["volumeMounts"] if m["mountPath"] == str(SHARED))
    assert shared["readOnly"] is True
    assert volumes[shared["name"]]["persistentVolumeClaim"] == {"claimName": "lora-data", "readOnly": True}


def test_gpu_resources_placement_and_priority(manifest: dict[str, Any]) -> None:
    spec, container = manifest["spec"], manifest["spec"]["containers"][0]
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"
    assert resources["requests"]["memory"] == resources["limits"]["memory"] == "14Gi"
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == "4"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert spec["tolerations"] == INFO["tolerations"]  # the GPU type's, from the run
    assert spec["priorityClassName"] == "lora-interactive"
    classes = {d["metadata"]["name"] for d in yaml.safe_load_all((REPO / "include/k8s/priority-classes.yaml").open())}
    assert spec["priorityClassName"] in classes
    assert manifest["metadata"]["labels"]["lora/tenant"] == "acme"


def test_hardened_and_credentials_only_from_a_secret(manifest: dict[str, Any]) -> None:
    spec, container = manifest["spec"], manifest["spec"]["containers"][0]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["envFrom"] == [{"secretRef": {"name": "lora-trainer-credentials"}}]
    names = {e["name"] for e in container.get("env", [])}
    assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert "secret" not in " ".join(container["args"]).lower()


def test_deferrable_and_failed_pods_are_kept(operator) -> None:
    assert operator.deferrable is True
    assert operator.on_finish_action.value == "delete_succeeded_pod"
    assert operator.retries == 4 and operator.pool.startswith("gpu_")  # preemption is a failure too


@pytest.mark.parametrize("path", sorted((REPO / "include" / "k8s").glob("*.yaml")), ids=lambda p: p.name)
def test_cluster_manifests_are_valid(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, "1.30", strict=True)


def test_runner_setting_selects_the_operator() -> None:
    from airflow.sdk import DAG

    from lora_airflow.runners import train_task
    from lora_airflow.runners.kubernetes_pod import LoraTrainPodOperator

    with DAG("runner_choice", schedule=None):
        info, checked = mock.MagicMock(), mock.MagicMock()
        trained = train_task(PlatformSettings(runner="kubernetes"))(info, checked)
    pod = trained.operator  # the runner returns the pod's result, as the local task does
    assert isinstance(pod, LoraTrainPodOperator)
    assert trained.key == "return_value"
    with DAG("runner_choice_local", schedule=None):
        local = train_task(PlatformSettings(runner="local"))(info, checked).operator
    assert not isinstance(local, LoraTrainPodOperator)
    assert (local.task_id, local.pool, local.retries) == ("train", "gpu_cpu", 2)
    assert local.python_callable.__doc__.startswith("Train in a subprocess of the worker")


@pytest.mark.parametrize("entry", ["execute", "trigger_reentry"])
def test_the_pod_returns_what_the_local_runner_returns(operator, entry: str, tmp_path: Path) -> None:
    """Evaluate and publish read the adapter's location from train's result, under either runner."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from lora_tasks.pipeline.training import training_result
    from lora_tasks.pipeline.workspace import RunInfo

    info = RunInfo.new(tmp_path, "demo", "cats", "standard", "l4", "manual__1", datetime(2026, 12, 1, tzinfo=UTC))
    info.adapter_dir.mkdir(parents=True)
    (info.adapter_dir / "training_summary.json").write_text(json.dumps(
        {"steps": 3, "peak_memory_bytes": 1, "train_loss": {"first": 1.0, "last": 0.5}, "median_step_seconds": 0.1}))
    ti = mock.MagicMock()
    ti.xcom_pull.return_value = asdict(info)
    with mock.patch.object(KubernetesPodOperator, entry):  # the pod itself ran on a cluster
        result = getattr(operator, entry)({"ti": ti}, *([{"status": "success"}] if entry == "trigger_reentry" else []))
    assert result == training_result(info) and result["adapter"] == str(info.adapter_dir)
    ti.xcom_push.assert_called_once_with(key="return_value", value=result)


@pytest.mark.parametrize(("code", "retried"), [(2, False), (1, True), (137, True)])
def test_a_refused_input_fails_at_once_other_failures_retry(operator, code: int, retried: bool) -> None:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from airflow.sdk.exceptions import AirflowException
    from kubernetes.client import models as k8s

    from lora_airflow.errors import NO_RETRY_FOR_INPUT_ERRORS

    pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="lora-train-x", namespace="lora-training"),
                    status=k8s.V1PodStatus(phase="Failed", container_statuses=[k8s.V1ContainerStatus(
                        name="base", image="lora-trainer", image_id="", ready=False, restart_count=0,
                        state=k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=code)))]))
    with mock.patch.object(KubernetesHook, "_get_default_client"), \
            mock.patch.object(KubernetesHook, "is_in_cluster", new_callable=mock.PropertyMock, return_value=False), \
            pytest.raises((AirflowException, SystemExit)) as raised:
        operator.cleanup(pod, pod)
    decision = NO_RETRY_FOR_INPUT_ERRORS.evaluate(raised.value, try_number=1, max_tries=5)
    assert (decision.action.value == "default") is retried
