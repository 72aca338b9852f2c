"""How the simulator's cost grows with its input: the generated week at 1x, 2x and 10x the jobs a day.

Each scale replays the predictive policy twice: with unbounded node pools, and with the pools of
include/gpu_types.yaml's ``max_count`` grown by the same factor (ten times the load on ten times the
platform; a fleet held at its 1x size would spend the replay on a backlog that never drains, which
measures the queue, not the simulator). Rounds are interleaved and medians reported. Prints the table and
ends with ``ratio <10x seconds / 1x seconds>`` against the target of 12.

    python bench/simulator_scaling.py [--rounds 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCALES = (1, 2, 10)
TARGET = 12.0


def main() -> int:
    from lora_tasks.gpu_types import load_gpu_types
    from lora_tasks.scheduling.planner import PlannerConfig
    from lora_tasks.scheduling.simulate import simulate
    from lora_tasks.scheduling.simulate.mechanics import Mechanics
    from lora_tasks.scheduling.simulate.policies import PredictivePolicy
    from lora_tasks.scheduling.simulate.trace import generated_week
    from lora_tasks.scheduling.windows import load_calendar
    from lora_tasks.settings import platform_settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    settings = platform_settings()
    calendar = load_calendar(settings.scheduling_file)
    max_count = {name: t.max_count for name, t in load_gpu_types(settings.gpu_types_file).items()}
    traces = {scale: generated_week(calendar, 7, args.seed, jobs_per_day=180 * scale) for scale in SCALES}
    seconds: dict[tuple[int, str], list[float]] = {}
    for _ in range(args.rounds):
        for scale, jobs in traces.items():
            for pools, limits in (("unbounded", {}), ("bounded", {k: v * scale for k, v in max_count.items()})):
                began = time.perf_counter()
                simulate(jobs, PredictivePolicy(PlannerConfig(node_startup=Mechanics().mean_boot())), calendar, limits)
                seconds.setdefault((scale, pools), []).append(time.perf_counter() - began)
    print("| scale | jobs | unbounded pools (s, median) | per 1000 jobs | bounded pools x scale (s) | per 1000 jobs |")
    print("|---|---|---|---|---|---|")
    median = {key: statistics.median(values) for key, values in seconds.items()}
    for scale, jobs in traces.items():
        unbounded, bounded = median[scale, "unbounded"], median[scale, "bounded"]
        print(f"| {scale}x | {len(jobs)} | {unbounded:.2f} | {1000 * unbounded / len(jobs):.3f} | {bounded:.2f} "
              f"| {1000 * bounded / len(jobs):.3f} |")
    ratio = max(median[10, pools] / median[1, pools] for pools in ("unbounded", "bounded"))
    print(f"{'ok  ' if ratio <= TARGET else 'FAIL'} 10x the trace in <= {TARGET:g}x the time of 1x "
          f"({len(traces[10]) / len(traces[1]):.1f}x the jobs), both pool settings")
    print(f"ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
