"""The training pod operator: a KubernetesPodOperator whose priority class follows the run."""

from __future__ import annotations

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator


class LoraTrainPodOperator(KubernetesPodOperator):
    """``priority_class_name`` is templated so each run's pod gets its priority class
    (lora-interactive, lora-standard, lora-batch): the provider leaves it static."""

    template_fields = (*KubernetesPodOperator.template_fields, "priority_class_name")
