"""Airflow-specific pieces: the per-run policy hook, the off-peak wait, the runners, billing callbacks, the
fleet (pool slots and placeholders), the REST client and the local stack. May import: Airflow, lora_tasks.

The work itself lives in ``lora_tasks``; of its packages only ``tiny`` is off limits here, except for the
demo's ``local_stack``, which builds the offline model the demo trains.
"""
