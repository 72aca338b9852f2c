"""The training pod operator: a KubernetesPodOperator whose priority class and GPU
tolerations follow the run, and whose tries are billed by the pod's own GPU time."""

from __future__ import annotations

import json
from typing import Any

from airflow.providers.cncf.kubernetes.callbacks import KubernetesPodOperatorCallback
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

from lora_airflow.billing import bill_try
from lora_tasks.errors import INPUT_ERROR_EXIT


def toleration(fields: dict[str, Any]) -> Any:
    """A ``V1Toleration`` from its manifest form (``tolerationSeconds``, as gpu_types.yaml writes it)."""
    from kubernetes.client import models as k8s

    return k8s.V1Toleration(**{"".join(f"_{c.lower()}" if c.isupper() else c for c in k): v
                               for k, v in fields.items()})


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
        from airflow.sdk.exceptions import AirflowException, AirflowFailException

        try:
            super().cleanup(pod, remote_pod, xcom_result, context)
        except AirflowException as exc:
            if exit_code(remote_pod, self.base_container_name) == INPUT_ERROR_EXIT:
                raise AirflowFailException(f"the trainer refused its input, so retrying cannot help:\n{exc}") from exc
            raise

    def build_pod_request_obj(self, context: Any = None) -> Any:
        pod = super().build_pod_request_obj(context)
        extra = [toleration(t) for t in json.loads(self.gpu_tolerations)]
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
