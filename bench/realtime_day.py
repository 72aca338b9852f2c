"""A real-time proof on the local stack: a generated day's arrivals, compressed, through the real DAGs,
admission and the bounded pool, against the simulator's replay of the same arrivals.

The generated day (``simulate.trace.generate_trace``, seed 1: arrivals that follow the working day,
20% interactive / 50% standard / 30% batch, deadlines 12 h and 36 h) is compressed ``--minutes`` into a
day's 24 hours, arrival times and deadlines alike, and each job becomes a ``lora_finetune`` run of the
tiny demo job (its training steps follow the trace's duration) triggered over the REST API at its
compressed arrival. The stack is `make up`'s (LocalExecutor, ``gpu_cpu`` one slot: the ``cpu`` type's
``max_count``), with every hour off-peak (a compressed night would not fit in Airflow's real clock) and
without quotas. Every run goes through validate_request's admission, intake, the pool, training,
evaluation and publishing.

Then the simulator replays the runs that reached the pool: arriving when their data checks ended, with
the ledger's predicted and actual training seconds, on one node that never boots or preempts (the local
runner's pool). The table puts the ledger's figures (waits in the pool, deadline misses, GPU-seconds)
beside the simulator's; the ratio of the p95 waits ends the output. The defaults (30 runs in 12
minutes) are what two CPU cores carry beside the stack itself: each tiny run is about 25 CPU-seconds of
intake, training, evaluation and publishing, so the issue's 200 runs in half an hour would need a
machine four times this one.

    python bench/realtime_day.py [--jobs 30] [--minutes 12] [--seed 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

DAG = "lora_finetune"
PRIORITIES = ("interactive", "standard", "batch")


def always_off_peak(folder: Path) -> Path:
    """include/scheduling.yaml's prices with every hour off-peak: batch runs go to the pool at once."""
    data = yaml.safe_load((ROOT / "include" / "scheduling.yaml").read_text())
    data["off_peak_windows"] = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                 "start": "00:00", "end": "24:00"}]
    path = folder / "scheduling.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def unlimited_tenant(folder: Path) -> Path:
    """The demo tenant, no quotas: the operator acts for it."""
    from lora_airflow.local_stack import DEMO, GATEWAY

    path = folder / "tenants.yaml"
    path.write_text(yaml.safe_dump({"shared_read": [str(DEMO / "models")], "gateway": [GATEWAY], "tenants": {
        "demo": {"roles": ["op", "admin"], "read": [str(DEMO / "uploads" / "demo")]}}}))
    return path


def compressed_day(jobs: int, minutes: float, seed: int) -> list[tuple[float, str, float, float | None]]:
    """(seconds after the start, priority, trace seconds, deadline seconds after arrival) per job, compressed."""
    from lora_tasks.scheduling.simulate.trace import generate_trace
    from lora_tasks.scheduling.windows import load_calendar

    calendar = load_calendar(ROOT / "include" / "scheduling.yaml")
    start = datetime(2026, 11, 24, tzinfo=calendar.zone).astimezone(UTC)  # a Tuesday
    day = generate_trace(start, 1, seed, calendar, jobs_per_day=jobs)
    factor = minutes * 60 / 86400
    return [((j.submitted_at - start).total_seconds() * factor, j.priority, j.actual_seconds,
             (j.deadline - j.submitted_at).total_seconds() * factor if j.deadline else None) for j in day]


def conf_for(index: int, priority: str, trace_seconds: float, deadline: datetime | None) -> dict[str, Any]:
    """The demo job at ``priority``, its steps following the trace's duration (a step per 20 trace-seconds:
    the tiny model's steps take about a tenth of a second here, so the pool is busy about half the day)."""
    from lora_airflow.local_stack import demo_conf

    conf = demo_conf()
    spec = conf["job_spec"]
    spec["job"].update({"name": f"day-{index:03d}", "priority": priority})
    if deadline is not None:
        spec["job"]["deadline"] = deadline.isoformat()
    steps = max(10, min(240, round(trace_seconds / 20)))
    spec["training_config"].update({"max_steps": steps, "save_steps": steps})
    spec["training_config"].pop("sample_every_n_steps", None)  # no samples during training
    return conf


def pool_arrivals(api: Any, run_ids: list[str]) -> dict[str, datetime]:
    """When each run reached the GPU pool: the end of its check_dataset task (absent: it never did)."""
    from airflow_client.client import TaskInstanceApi

    found = {}
    for run_id in run_ids:
        for ti in TaskInstanceApi(api).get_task_instances(DAG, run_id).task_instances:
            if ti.task_id == "check_dataset" and ti.state == "success" and ti.end_date is not None:
                found[run_id] = ti.end_date.astimezone(UTC)
    return found


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else 0.0


def main() -> int:
    from lora_airflow.local_stack import LOGINS, demo_stack
    from lora_airflow.rest_client import airflow_api, trigger_run, wait_for_dag, wait_for_run
    from lora_tasks.ledger.store import open_ledger
    from lora_tasks.scheduling.simulate import simulate
    from lora_tasks.scheduling.simulate.mechanics import Mechanics
    from lora_tasks.scheduling.simulate.policies import StaticPolicy
    from lora_tasks.scheduling.simulate.trace import TraceJob
    from lora_tasks.scheduling.windows import load_calendar

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--minutes", type=float, default=12)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    day = compressed_day(args.jobs, args.minutes, args.seed)
    with tempfile.TemporaryDirectory(prefix="realtime-day-") as folder:
        calendar_file = always_off_peak(Path(folder))
        calendar = load_calendar(calendar_file)
        extra = {"LORA_SCHEDULING_FILE": str(calendar_file), "LORA_TENANTS_FILE": str(unlimited_tenant(Path(folder)))}
        with demo_stack("realtime-day-", extra) as (config, env):
            api = airflow_api(config.base_url, "operator", LOGINS["operator"])
            wait_for_dag(api, DAG)
            began, run_ids = time.monotonic(), []
            for index, (offset, priority, seconds, due) in enumerate(day):
                time.sleep(max(0.0, offset - (time.monotonic() - began)))
                deadline = datetime.now(UTC) + timedelta(seconds=due) if due is not None else None
                run_ids.append(trigger_run(api, DAG, conf_for(index, priority, seconds, deadline)))
            states = {run_id: str(wait_for_run(api, DAG, run_id, timeout=3600).state.value) for run_id in run_ids}
            arrived = pool_arrivals(api, run_ids)
            ledger = open_ledger(env["LORA_LEDGER_URL"])
            runs = {r.run_id: r for r in ledger.runs() if r.run_id in set(run_ids)}
        wall = time.monotonic() - began
    trained = [runs[r] for r in arrived if runs[r].actual_seconds and runs[r].started_at is not None]
    real_waits = {p: [(r.started_at - arrived[r.run_id]).total_seconds() for r in trained if r.priority == p]
                  for p in PRIORITIES}
    real_misses = sum(1 for r in trained if r.deadline is not None and r.finished_at > r.deadline)
    trace = sorted((TraceJob(r.run_id, arrived[r.run_id], r.tenant, r.priority, "cpu", float(r.predicted_seconds),
                             float(r.actual_seconds), r.deadline) for r in trained), key=lambda j: j.submitted_at)
    cluster = Mechanics(boot_median_seconds=0.0, boot_sigma=0.0, boot_tail_share=0.0, preemption=False,
                        scale_down_delay=timedelta(0))
    report, sim = simulate(trace, StaticPolicy({"cpu": 1}), calendar, {"cpu": 1}, cluster, None)
    sim_waits = {p: [sim.waited[j.run_id] for j in trace if j.priority == p] for p in PRIORITIES}
    refused = sum(1 for r in runs.values() if r.status == "refused")
    print(f"{len(day)} runs over {args.minutes:g} minutes (a day compressed {86400 / (args.minutes * 60):.0f}x), "
          f"{wall / 60:.1f} minutes in all; states: "
          + ", ".join(f"{s} {sum(v == s for v in states.values())}" for s in sorted(set(states.values()))))
    print(f"admission refused {refused} at validate_request; {len(trained)} trained in the one-slot pool")
    print("| figure | ledger (real run) | simulator (same arrivals) |")
    print("|---|---|---|")
    for p in PRIORITIES:
        if real_waits[p]:
            print(f"| {p} wait in the pool p50 / p95 (s) | {pct(real_waits[p], 50):.1f} / {pct(real_waits[p], 95):.1f} "
                  f"| {pct(sim_waits[p], 50):.1f} / {pct(sim_waits[p], 95):.1f} |")
    print(f"| deadline misses | {real_misses} | {sum(report[f'{p}_deadline_misses'] for p in PRIORITIES)} |")
    print(f"| GPU-seconds | {sum(r.gpu_seconds for r in trained):.0f} | {sim.busy_seconds:.0f} |")
    everyone_real = [w for p in PRIORITIES for w in real_waits[p]]
    everyone_sim = [w for p in PRIORITIES for w in sim_waits[p]]
    print(f"mean predicted / actual training seconds: "
          f"{statistics.mean(float(r.predicted_seconds) for r in trained):.1f} / "
          f"{statistics.mean(float(r.actual_seconds) for r in trained):.1f}")
    print(f"wait_p95_ratio {pct(everyone_real, 95) / max(pct(everyone_sim, 95), 1e-9):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
