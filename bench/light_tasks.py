"""How long the light tasks take under load: validate_request and check_dataset with 1 and 12 concurrent runs.

Starts the local stack (LocalExecutor, as `make up` configures it), runs the demo job (the
trigger form's defaults) once to warm up, then ``--alone`` times one after another, then
``--concurrent`` times at once over the REST API, and reads each task instance's duration
(start to end, as the UI shows it: process start-up, DAG parse, imports and the stage's own
work; queueing before the start is not counted). The stages' own compute (``seconds`` in their
results) is printed beside it: what is left when start-up costs nothing. Under load, training
runs meanwhile (one at a time in ``gpu_cpu``) on the same cores; the concurrent runs are
measured once both light tasks of each have finished.

    python bench/light_tasks.py [--alone 3] [--concurrent 12]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

DAG = "lora_finetune"
LIGHT = ("validate_request", "check_dataset")


def light_tasks_done(api: Any, run_id: str, timeout: float = 1800) -> list[Any]:
    """The run's light task instances, once both have succeeded."""
    from airflow_client.client import TaskInstanceApi
    from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

    def unfinished(tis: list[Any]) -> bool:
        return len(tis) < len(LIGHT) or any(ti.state != "success" for ti in tis)

    @retry(retry=retry_if_result(unfinished), wait=wait_fixed(2), stop=stop_after_delay(timeout))
    def poll() -> list[Any]:
        tis = [ti for ti in TaskInstanceApi(api).get_task_instances(DAG, run_id).task_instances if ti.task_id in LIGHT]
        if any(ti.state in {"failed", "upstream_failed"} for ti in tis):
            raise RuntimeError(f"run {run_id}: {[(ti.task_id, ti.state) for ti in tis]}")
        return tis

    return poll()


def durations(api: Any, run_ids: list[str], whole_runs: bool) -> dict[str, dict[str, list[float]]]:
    """Per light task: task-instance durations and the stage's own seconds, over ``run_ids`` (waiting for
    each whole run to succeed with ``whole_runs``)."""
    from lora_airflow.rest_client import task_result, wait_for_run

    found: dict[str, dict[str, list[float]]] = {t: {"task": [], "own": []} for t in LIGHT}
    for run_id in run_ids:
        if whole_runs and (state := wait_for_run(api, DAG, run_id, timeout=3600).state) != "success":
            raise RuntimeError(f"run {run_id} ended {state}")
        for ti in light_tasks_done(api, run_id):
            found[ti.task_id]["task"].append((ti.end_date - ti.start_date).total_seconds())
            found[ti.task_id]["own"].append(task_result(api, DAG, run_id, ti.task_id)["seconds"])
    return found


def main() -> int:
    from lora_airflow.local_stack import LOGINS, demo_stack
    from lora_airflow.rest_client import airflow_api, trigger_run, wait_for_dag

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alone", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=12)
    args = parser.parse_args()
    results = {}
    with demo_stack("light-tasks-") as (config, env):
        api = airflow_api(config.base_url, "operator", LOGINS["operator"])
        wait_for_dag(api, DAG)
        # the first run of a base model measures its architecture once (cache cold); the rows below run warm
        durations(api, [trigger_run(api, DAG, {"job_name": "warm-up"})], whole_runs=True)
        alone: dict[str, dict[str, list[float]]] = {t: {"task": [], "own": []} for t in LIGHT}
        for i in range(args.alone):  # one at a time: each run finishes before the next starts
            for task, found in durations(api, [trigger_run(api, DAG, {"job_name": f"alone-{i}"})], True).items():
                alone[task]["task"] += found["task"]
                alone[task]["own"] += found["own"]
        results[1] = alone
        runs = [trigger_run(api, DAG, {"job_name": f"load-{i}"}) for i in range(args.concurrent)]
        results[args.concurrent] = durations(api, runs, whole_runs=False)
    print(f"cores: {len(os.sched_getaffinity(0))}; Airflow parallelism {env['AIRFLOW__CORE__PARALLELISM']}, "
          "cpu_preprocess 4 slots, gpu_cpu 1 slot")
    print("| concurrent runs | task | median (s) | min-max (s) | stage's own compute, median (s) |")
    print("|---|---|---|---|---|")
    for count, found in results.items():
        for task in LIGHT:
            seconds, own = found[task]["task"], found[task]["own"]
            print(f"| {count} | {task} | {statistics.median(seconds):.1f} | {min(seconds):.1f}-{max(seconds):.1f} "
                  f"| {statistics.median(own):.2f} |")
    for task, target in zip(LIGHT, (5.0, 10.0), strict=True):
        median = statistics.median(results[args.concurrent][task]["task"])
        print(f"{'ok  ' if median <= target else 'FAIL'} {task} median <= {target:.0f} s with {args.concurrent} "
              "concurrent runs")
        print(f"{task}_median_{args.concurrent} {median:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
