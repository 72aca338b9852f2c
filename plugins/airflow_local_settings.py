"""Airflow cluster policies, picked up from the plugins folder (which Airflow puts on sys.path).

The api-server, the scheduler and ``dag.test()`` all create task instances, so all of them
load this file.
"""

from lora_airflow.policies import task_instance_mutation_hook

__all__ = ["task_instance_mutation_hook"]
