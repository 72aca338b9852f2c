"""Apply the capacity planner's decisions in Kubernetes mode.

Two levers: the Airflow pools of each GPU type (``gpu_<type>`` and, for interactive runs,
``gpu_<type>_interactive``) get as many slots as there are GPUs of that type ready in the
cluster now (so Airflow never launches more pods than can be placed, preemption aside), and
the type's placeholder deployment (pause pods at priority -5 that request a GPU each) gets
``decided - running`` replicas, so the cluster autoscaler adds nodes before real pods arrive
(real pods preempt the placeholders) and removes them once the placeholders are scaled away
and the nodes idle. Placeholder deployments are built here from the GPU type (node
selector, tolerations) and created on first use; include/k8s/gpu-placeholders.yaml holds
their priority class and the planner's RBAC. With the local runner there is nothing to
scale: the decisions are only recorded.
"""

from __future__ import annotations

import logging
from typing import Any

from lora_tasks.gpu_types import GpuType
from lora_tasks.settings import PlatformSettings

log = logging.getLogger(__name__)

PRODUCT_LABEL = "nvidia.com/gpu.product"
PLACEHOLDER_PRIORITY_CLASS = "lora-placeholder"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


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


def placeholder_name(gpu: GpuType) -> str:
    return f"lora-placeholder-{gpu.name}"


def placeholder_deployment(gpu: GpuType, namespace: str, replicas: int) -> Any:
    """Pause pods that each hold one GPU of this type, placed like its training pods."""
    from airflow.providers.cncf.kubernetes.backcompat.backwards_compat_converters import convert_toleration
    from kubernetes.client import models as k8s

    labels = {"app.kubernetes.io/name": "lora-placeholder", "lora/gpu-type": gpu.name}
    gpu_only = {"nvidia.com/gpu": "1", "memory": "64Mi"}
    container = k8s.V1Container(
        name="pause", image=PAUSE_IMAGE,
        resources=k8s.V1ResourceRequirements(requests={**gpu_only, "cpu": "100m"}, limits=gpu_only),
        security_context=k8s.V1SecurityContext(allow_privilege_escalation=False, read_only_root_filesystem=True,
                                               capabilities=k8s.V1Capabilities(drop=["ALL"])),
    )
    pod = k8s.V1PodSpec(
        containers=[container], priority_class_name=PLACEHOLDER_PRIORITY_CLASS, termination_grace_period_seconds=0,
        automount_service_account_token=False, node_selector=gpu.node_selector or None,
        tolerations=[convert_toleration(t) for t in gpu.tolerations],
        security_context=k8s.V1PodSecurityContext(run_as_non_root=True, run_as_user=65535,
                                                  seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
    )
    return k8s.V1Deployment(
        api_version="apps/v1", kind="Deployment",
        metadata=k8s.V1ObjectMeta(name=placeholder_name(gpu), namespace=namespace, labels=labels),
        spec=k8s.V1DeploymentSpec(replicas=replicas, selector=k8s.V1LabelSelector(match_labels=labels),
                                  template=k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=labels),
                                                                 spec=pod)),
    )


def scale_placeholders(apps: Any, gpu: GpuType, namespace: str, replicas: int) -> None:
    """Set the type's placeholder replicas, creating its deployment the first time."""
    from kubernetes.client.exceptions import ApiException

    try:
        apps.patch_namespaced_deployment_scale(placeholder_name(gpu), namespace, {"spec": {"replicas": replicas}})
    except ApiException as exc:
        if exc.status != 404:
            raise
        apps.create_namespaced_deployment(namespace, placeholder_deployment(gpu, namespace, replicas))


def apply_decisions(decisions: list[dict[str, Any]], settings: PlatformSettings) -> list[dict[str, Any]]:
    """Pool slots and placeholders in Kubernetes mode; with the local runner the GPUs are this
    machine's, so the decisions are only recorded."""
    if settings.runner != "kubernetes":
        log.info("local runner: GPUs are this machine's; decisions recorded, nothing to scale")
        return decisions
    return apply_kubernetes(decisions, settings)


def apply_kubernetes(decisions: list[dict[str, Any]], settings: PlatformSettings, core: Any = None, apps: Any = None,
                     airflow: Any = None) -> list[dict[str, Any]]:
    """Pool slots and placeholder replicas for each decision. The clients default to the
    Kubernetes connection (``kubernetes_default``) and Airflow's REST API from the settings."""
    from airflow_client.client import PoolApi, PoolPatchBody

    from lora_airflow.rest_client import airflow_api
    from lora_tasks.gpu_types import load_gpu_types

    if core is None or apps is None:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
        from kubernetes.client import AppsV1Api

        hook = KubernetesHook()
        core, apps = hook.core_v1_client, AppsV1Api(hook.api_client)
    airflow = airflow or airflow_api(settings.airflow_api_url, settings.airflow_api_user, settings.airflow_api_password)
    pools = PoolApi(airflow)
    types = load_gpu_types(settings.gpu_types_file)
    applied = []
    for decision in decisions:
        gpu = types[decision["gpu_type"]]
        product = gpu.node_selector.get(PRODUCT_LABEL, "")
        ready = available_gpus(core.list_node(label_selector=f"{PRODUCT_LABEL}={product}").items)
        for pool in (gpu.pool, gpu.pool_for("interactive", "kubernetes")):
            pools.patch_pool(pool, PoolPatchBody(pool=pool, slots=ready, include_deferred=True), update_mask=["slots"])
        replicas = placeholder_replicas(decision["applied"], decision["running"])
        scale_placeholders(apps, gpu, settings.k8s_namespace, replicas)
        applied.append({**decision, "pool_slots": ready, "placeholders": replicas})
    return applied
