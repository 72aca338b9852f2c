"""The training pod operator: a KubernetesPodOperator whose priority class and GPU
tolerations follow the run."""

from __future__ import annotations

import json
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator


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

    def build_pod_request_obj(self, context: Any = None) -> Any:
        pod = super().build_pod_request_obj(context)
        extra = [toleration(t) for t in json.loads(self.gpu_tolerations)]
        pod.spec.tolerations = [*(pod.spec.tolerations or []), *extra]
        return pod
