"""The train stage, as a local subprocess or a Kubernetes pod: one setting (LORA_RUNNER), one result.

Both run ``python -m lora_tasks.train`` on the run's workspace, so both leave the same files
(``train/output/adapter``) and a retry of either resumes from the newest checkpoint there.
Pool and priority weight are set per run by ``lora_airflow.policies``; the values here are
what a run gets if that policy is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from lora_airflow.billing import attempt_failed, attempt_started, attempt_succeeded
from lora_tasks.settings import PlatformSettings

XCOM = "ti.xcom_pull(task_ids='validate_request')"
COMMON: dict[str, Any] = {
    "task_id": "train",
    "priority_weight": 10,
    "weight_rule": "absolute",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "on_execute_callback": attempt_started,
    "on_success_callback": attempt_succeeded,
    "on_failure_callback": attempt_failed,  # the last try
    "on_retry_callback": attempt_failed,  # every earlier one: Airflow calls only this for them
}


POD_RETRIES = 4
"""A pod can also fail by being preempted for an interactive run (it resumes from its checkpoint)."""


def local_train(settings: PlatformSettings) -> Callable[..., Any]:
    from airflow.sdk import task

    @task(pool=f"gpu_{settings.default_gpu_type}", **COMMON)
    def train(info: dict[str, Any], checked: dict[str, Any]) -> dict[str, Any]:
        """Train in a subprocess of the worker, on its CPU or local GPU."""
        from lora_airflow.errors import user_errors_fail_fast
        from lora_tasks.stages import RunInfo, train_locally

        with user_errors_fail_fast():
            return train_locally(RunInfo.of(info), checked["train"])

    return train


def pod_train(settings: PlatformSettings) -> Callable[..., Any]:
    """A KubernetesPodOperator factory taking the same inputs as the local task."""

    def train(info: Any, checked: Any) -> Any:
        operator = training_pod_operator(settings)
        info >> operator
        checked >> operator
        return operator

    return train


def training_pod_operator(settings: PlatformSettings) -> Any:
    from kubernetes.client import models as k8s

    from lora_airflow.pod_operator import LoraTrainPodOperator, PodGpuTime

    workspace = str(settings.workspace.resolve())
    user = 10001
    resources = {"cpu": f"{{{{ {XCOM}['resources']['cpu'] }}}}", "memory": f"{{{{ {XCOM}['resources']['memory'] }}}}",
                 "nvidia.com/gpu": "1"}
    volumes = [k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource()),
               k8s.V1Volume(name="workspace", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                   claim_name=settings.k8s_workspace_claim))]
    mounts = [k8s.V1VolumeMount(name="scratch", mount_path="/tmp"),
              k8s.V1VolumeMount(name="workspace", mount_path=workspace)]
    if settings.shared_data:  # base models and local datasets, at the path the workers see them
        volumes.append(k8s.V1Volume(name="shared-data", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
            claim_name=settings.k8s_data_claim, read_only=True)))
        mounts.append(k8s.V1VolumeMount(name="shared-data", mount_path=str(settings.shared_data.resolve()),
                                        read_only=True))
    return LoraTrainPodOperator(
        **{**COMMON, "retries": POD_RETRIES},
        pool=f"gpu_{settings.default_gpu_type}",
        name="lora-train",
        namespace=settings.k8s_namespace,
        image=settings.trainer_image,
        cmds=["python", "-m", "lora_tasks.train"],
        arguments=["--config", f"{{{{ {XCOM}['spec'] }}}}",
                   "--dataset", "{{ ti.xcom_pull(task_ids='check_dataset')['train'] }}",
                   "--output", f"{{{{ {XCOM}['workspace'] }}}}/train/output"],
        labels={"app.kubernetes.io/name": "lora-trainer", "lora/tenant": f"{{{{ {XCOM}['tenant'] }}}}",
                "lora/priority": f"{{{{ {XCOM}['priority'] }}}}"},
        container_resources=k8s.V1ResourceRequirements(requests=resources, limits=resources),
        node_selector={"nvidia.com/gpu.product": f"{{{{ {XCOM}['gpu_product'] }}}}"},
        gpu_tolerations=f"{{{{ {XCOM}['tolerations'] | tojson }}}}",
        priority_class_name=f"lora-{{{{ {XCOM}['priority'] }}}}",
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True, run_as_user=user, run_as_group=user, fs_group=user,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=k8s.V1SecurityContext(
            run_as_non_root=True, run_as_user=user, allow_privilege_escalation=False,
            read_only_root_filesystem=True, capabilities=k8s.V1Capabilities(drop=["ALL"]),
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        automount_service_account_token=False,
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=settings.k8s_credentials_secret))],
        env_vars=[k8s.V1EnvVar(name="HF_HOME", value="/tmp/huggingface"),
                  k8s.V1EnvVar(name="HF_HUB_DISABLE_TELEMETRY", value="1")],
        volumes=volumes,
        volume_mounts=mounts,
        termination_message_policy="FallbackToLogsOnError",  # the trainer's error ends its log
        deferrable=True,
        callbacks=[PodGpuTime],
        on_finish_action="delete_succeeded_pod",
        get_logs=True,
        startup_timeout_seconds=900,
    )


def train_task(settings: PlatformSettings) -> Callable[..., Any]:
    """The train stage for this installation's runner."""
    return pod_train(settings) if settings.runner == "kubernetes" else local_train(settings)
