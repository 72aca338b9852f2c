"""The Kubernetes runner: the trainer in a GPU pod (a KubernetesPodOperator), hardened, deferrable,
placed and prioritised per run, billed by the pod's own GPU time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lora_airflow.runners import COMMON
from lora_tasks.settings import PlatformSettings

XCOM = "ti.xcom_pull(task_ids='validate_request')"


POD_RETRIES = 4
"""A pod can also fail by being preempted for an interactive run (it resumes from its checkpoint)."""


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
