"""Apply the capacity planner's decisions in Kubernetes mode.

Two levers: the Airflow pool of each GPU type gets as many slots as there are GPUs of that
type ready in the cluster now (so Airflow never launches more pods than can be placed), and
the type's placeholder deployment (include/k8s/gpu-placeholders.yaml: pause pods at priority
-5 that request a GPU) gets ``decided - running`` replicas, so the cluster autoscaler adds
nodes before real pods arrive (real pods preempt the placeholders) and removes them once
the placeholders are scaled away and the nodes idle. With the local runner there is
nothing to scale: the decisions are only recorded.
"""

from __future__ import annotations

from typing import Any

PRODUCT_LABEL = "nvidia.com/gpu.product"


def available_gpus(nodes: list[Any]) -> int:
    """GPUs on Ready, schedulable nodes (from their allocatable resources)."""
    total = 0
    for node in nodes:
        ready = any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
        if ready and not node.spec.unschedulable:
            total += int((node.status.allocatable or {}).get("nvidia.com/gpu", 0))
    return total


def placeholder_replicas(decided: int, running: int) -> int:
    """Placeholders hold the GPUs the planner wants beyond those real jobs already use."""
    return max(0, decided - running)


def apply_kubernetes(decisions: list[dict[str, Any]], settings: Any) -> list[dict[str, Any]]:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes.client import AppsV1Api

    from lora_airflow.local_stack import ApiClient
    from lora_tasks.gpu_types import load_gpu_types

    hook = KubernetesHook()
    core, apps = hook.core_v1_client, AppsV1Api(hook.api_client)
    airflow = ApiClient(settings.airflow_api_url, settings.airflow_api_user, settings.airflow_api_password)
    types = load_gpu_types(settings.gpu_types_file)
    applied = []
    for decision in decisions:
        gpu = types[decision["gpu_type"]]
        product = gpu.node_selector.get(PRODUCT_LABEL, "")
        ready = available_gpus(core.list_node(label_selector=f"{PRODUCT_LABEL}={product}").items)
        airflow.http.patch(f"/api/v2/pools/{gpu.pool}", params={"update_mask": "slots"},
                           json={"pool": gpu.pool, "slots": ready, "include_deferred": True}).raise_for_status()
        replicas = placeholder_replicas(decision["applied"], decision["running"])
        apps.patch_namespaced_deployment_scale(f"lora-placeholder-{gpu.name}", settings.k8s_namespace,
                                               {"spec": {"replicas": replicas}})
        applied.append({**decision, "pool_slots": ready, "placeholders": replicas})
    return applied
