"""Per-run pool and priority for the train task.

A task's pool and ``priority_weight`` are fixed when the DAG is parsed, but ours depend on
the run: the job's GPU type picks the pool (``gpu_<type>``, one slot per GPU; with the
Kubernetes runner, interactive runs use ``gpu_<type>_interactive``: see ``GpuType.pool_for``)
and its priority class picks the weight. Airflow's ``task_instance_mutation_hook`` runs when a run's
task instances are created, with the run's conf at hand, and what it sets is what the
scheduler orders and admits by. It must never raise (a bad conf is refused, with a
message, by validate_request), and never touch the database (it runs inside Airflow's
own transaction).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

TRAIN_TASKS = {("lora_finetune", "train")}


def task_instance_mutation_hook(task_instance: Any, dag_run: Any = None) -> None:
    """Airflow calls this with the run (``dag_run``) once its instances exist; first without it."""
    if dag_run is None or (task_instance.dag_id, task_instance.task_id) not in TRAIN_TASKS:
        return
    try:
        from lora_tasks.gpu_types import load_gpu_types
        from lora_tasks.settings import platform_settings
        from lora_tasks.spec.conf import PRIORITY_WEIGHTS, scheduling_hints

        settings = platform_settings()
        priority, gpu_type = scheduling_hints(dag_run.conf, settings.default_gpu_type)
        types = load_gpu_types(settings.gpu_types_file)
        gpu = types.get(gpu_type) or types[settings.default_gpu_type]
        task_instance.pool = gpu.pool_for(priority, settings.runner)
        task_instance.priority_weight = PRIORITY_WEIGHTS[priority]
    except Exception:
        log.exception("could not set the pool and priority of %s; keeping the DAG's defaults", task_instance)
