"""What Airflow adds to one lora_finetune run: wall time minus the stages' own compute.

Starts the local stack (api-server, scheduler, dag-processor, triggerer; LocalExecutor;
SQLite, or PostgreSQL with LORA_AIRFLOW_DB_URL), triggers ``lora_finetune`` on the tiny
model over the REST API ``--runs`` times one after another, and reads each task
instance's timings and each stage's own ``seconds`` (returned through XCom). Reports per
run: wall time, compute, overhead, and where it goes (task start-up inside task
instances, and gaps between them: scheduling and queueing).

    python bench/orchestration_overhead.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

DAG = "lora_finetune"
STAGES = ["validate_request", "scan_dataset", "filter_content", "caption", "check_dataset", "train", "evaluate",
          "publish"]


def measure(api: Any, conf: dict) -> dict[str, float]:
    from airflow_client.client import TaskInstanceApi

    from lora_airflow.rest_client import task_result, trigger_run, wait_for_run

    run = wait_for_run(api, DAG, trigger_run(api, DAG, conf))
    if run.state != "success":
        raise RuntimeError(f"run {run.dag_run_id} ended {run.state}")
    tis = TaskInstanceApi(api).get_task_instances(DAG, run.dag_run_id).task_instances
    compute = sum(task_result(api, DAG, run.dag_run_id, s)["seconds"] for s in STAGES)
    inside = sum((ti.end_date - ti.start_date).total_seconds() for ti in tis if ti.start_date and ti.end_date)
    wall = (run.end_date - run.start_date).total_seconds()
    return {"wall": wall, "compute": compute, "overhead": wall - compute, "task_startup": inside - compute,
            "between_tasks": wall - inside}


def main() -> int:
    from lora_airflow.local_stack import LOGINS, demo_conf, demo_stack
    from lora_airflow.rest_client import airflow_api, wait_for_dag

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with demo_stack("orchestration-") as (config, _):
        api = airflow_api(config.base_url, "admin", LOGINS["admin"])
        wait_for_dag(api, DAG)
        for i in range(args.runs):
            conf = demo_conf()
            conf["job_spec"]["job"]["name"] = f"bench-{i}"
            rows.append(measure(api, conf))
    print("| run | wall (s) | stages' compute (s) | overhead (s) | of which task start-up | between tasks |")
    print("|---|---|---|---|---|---|")
    for i, row in enumerate(rows, 1):
        print(f"| {i} | {row['wall']:.1f} | {row['compute']:.1f} | {row['overhead']:.1f} | {row['task_startup']:.1f} "
              f"| {row['between_tasks']:.1f} |")
    median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(f"overhead {median['overhead']:.1f}")
    print(f"overhead_share {median['overhead'] / median['wall']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
