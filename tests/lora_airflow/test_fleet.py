"""Applying capacity decisions in Kubernetes mode: ready GPUs counted from nodes, placeholder replicas
and deployments placed like training pods."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from lora_airflow.fleet import available_gpus, placeholder_deployment, placeholder_replicas
from lora_tasks.gpu_types import GpuType, load_gpu_types

REPO = Path(__file__).resolve().parents[2]


def test_kubernetes_levers() -> None:
    from kubernetes.client import V1Node, V1NodeCondition, V1NodeSpec, V1NodeStatus

    def node(ready: str, gpus: str | None, unschedulable: bool | None = None) -> V1Node:
        conditions = [V1NodeCondition(type="MemoryPressure", status="False"),
                      V1NodeCondition(type="Ready", status=ready)]
        allocatable = {"cpu": "8", "memory": "64Gi"} | ({"nvidia.com/gpu": gpus} if gpus else {})
        return V1Node(status=V1NodeStatus(conditions=conditions, allocatable=allocatable),
                      spec=V1NodeSpec(unschedulable=unschedulable))

    nodes = [node("True", "8"), node("False", "8"), node("True", "4", unschedulable=True), node("True", None),
             node("Unknown", "2"), node("True", "2")]
    assert available_gpus(nodes) == 10  # Ready and schedulable: 8 + 2; a CPU node has no GPUs
    assert placeholder_replicas(decided=6, running=4) == 2 and placeholder_replicas(decided=2, running=4) == 0


@pytest.mark.parametrize("gpu", [g for g in load_gpu_types(REPO / "include" / "gpu_types.yaml").values() if g.is_gpu],
                         ids=lambda g: g.name)
def test_placeholders_are_valid_and_placed_like_training_pods(gpu: GpuType) -> None:
    from kubernetes.client import ApiClient

    body = ApiClient().sanitize_for_serialization(placeholder_deployment(gpu, "lora-training", 3))
    kubernetes_validate.validate(body, "1.30", strict=True)
    pod = body["spec"]["template"]["spec"]
    assert body["metadata"]["name"] == f"lora-placeholder-{gpu.name}" and body["spec"]["replicas"] == 3
    assert pod["nodeSelector"] == gpu.node_selector and pod["tolerations"] == list(gpu.tolerations)
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    classes = {d["metadata"]["name"]: d for d in yaml.safe_load_all((REPO / "include/k8s/gpu-placeholders.yaml")
                                                                    .read_text()) if d["kind"] == "PriorityClass"}
    assert -10 < classes[pod["priorityClassName"]]["value"] < 0  # triggers scale-up, yields to every real pod
