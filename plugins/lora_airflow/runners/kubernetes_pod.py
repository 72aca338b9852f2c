"""The Kubernetes runner: the trainer in a GPU pod (a KubernetesPodOperator), hardened, deferrable,
placed and prioritised per run, billed by the pod's own GPU time, returning what the local runner returns."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from airflow.providers.cncf.kubernetes.backcompat.backwards_compat_converters import convert_toleration
from airflow.providers.cncf.kubernetes.callbacks import KubernetesPodOperatorCallback
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

from lora_airflow.billing import bill_try
from lora_airflow.runners import COMMON
from lora_tasks.errors import INPUT_ERROR_EXIT
from lora_tasks.pipeline.workspace import TRAIN_OUTPUT
from lora_tasks.settings import PlatformSettings

XCOM = "ti.xcom_pull(task_ids='validate_request')"
XCOM_RETURN_KEY = "return_value"


POD_RETRIES = 4
"""A pod can also fail by being preempted for an interactive run (it resumes from its checkpoint)."""


def pod_train(settings: PlatformSettings) -> Callable[..., Any]:
    """A KubernetesPodOperator factory taking the same inputs as the local task, and giving the same output."""

    def train(info: Any, checked: Any) -> Any:
        operator = training_pod_operator(settings)
        info >> operator  # its templates read both upstream results
        checked >> operator
        return operator.output

    return train


def training_pod_operator(settings: PlatformSettings) -> Any:
    from kubernetes.client import models as k8s

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
                   "--output", f"{{{{ {XCOM}['workspace'] }}}}/{TRAIN_OUTPUT}"],
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


class LoraTrainPodOperator(KubernetesPodOperator):
    """``priority_class_name`` is templated so each run's pod gets its priority class
    (lora-interactive, lora-standard, lora-batch), and ``gpu_tolerations`` (JSON, templated)
    adds the tolerations of the run's GPU type: the provider leaves both static."""

    template_fields = (*KubernetesPodOperator.template_fields, "priority_class_name", "gpu_tolerations")

    def __init__(self, *, gpu_tolerations: str = "[]", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gpu_tolerations = gpu_tolerations

    def cleanup(self, pod: Any, remote_pod: Any, xcom_result: Any = None, context: Any = None) -> None:
        """A trainer that exits 2 refused its input (the message says why): no retry can help."""
        from airflow.sdk.exceptions import AirflowException

        from lora_airflow.errors import InputNeedsFixing

        try:
            super().cleanup(pod, remote_pod, xcom_result, context)
        except AirflowException as exc:
            if exit_code(remote_pod, self.base_container_name) == INPUT_ERROR_EXIT:
                raise InputNeedsFixing(f"the trainer refused its input, so retrying cannot help:\n{exc}") from None
            raise

    def execute(self, context: Any) -> dict[str, Any]:
        super().execute(context)  # deferrable: this defers, and the try resumes in trigger_reentry
        return self.training_result(context)

    def trigger_reentry(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        super().trigger_reentry(context, event)
        return self.training_result(context)

    @staticmethod
    def training_result(context: Any) -> dict[str, Any]:
        """What the trainer left in the shared workspace: the adapter's location and figures, as the
        local runner returns them. Pushed here: the provider's own XCom push would add a sidecar
        container to the hardened pod."""
        from lora_tasks.pipeline.training import training_result
        from lora_tasks.pipeline.workspace import RunInfo

        result = training_result(RunInfo.of(context["ti"].xcom_pull(task_ids="validate_request")))
        context["ti"].xcom_push(key=XCOM_RETURN_KEY, value=result)
        return result

    def build_pod_request_obj(self, context: Any = None) -> Any:
        pod = super().build_pod_request_obj(context)
        extra = [convert_toleration(t) for t in json.loads(self.gpu_tolerations)]
        pod.spec.tolerations = [*(pod.spec.tolerations or []), *extra]
        return pod


class PodGpuTime(KubernetesPodOperatorCallback):
    """Bill a training pod's try by the time it held its GPU: from the moment the scheduler bound
    it to a node (the GPU is its from then) to its container's end. The task's own time also
    counts waiting for a node to start and for the image to pull, when no GPU is held."""

    @staticmethod
    def on_pod_completion(*, pod: Any, context: Any, operator: Any = None, **kwargs: Any) -> None:
        span = gpu_span(pod, getattr(operator, "base_container_name", None) or "base")
        if span is not None:
            bill_try(context, *span)


def exit_code(pod: Any, container: str = "base") -> int | None:
    terminated = _terminated(pod, container)
    return terminated.exit_code if terminated else None


def _terminated(pod: Any, container: str) -> Any:
    statuses = (pod.status.container_statuses if pod is not None and pod.status else None) or []
    return next((c.state.terminated for c in statuses if c.name == container and c.state and c.state.terminated),
                None)


def gpu_span(pod: Any, container: str = "base") -> tuple[Any, Any, bool] | None:
    """(bound to a node, container finished, exit code 0) of a finished pod; None when unknown."""
    status = pod.status
    scheduled = next((c.last_transition_time for c in (status.conditions or [])
                      if c.type == "PodScheduled" and c.status == "True"), None)
    terminated = _terminated(pod, container)
    if scheduled is None or terminated is None or terminated.finished_at is None:
        return None
    return scheduled, terminated.finished_at, terminated.exit_code == 0
