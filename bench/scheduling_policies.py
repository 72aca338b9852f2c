"""The capacity policies on the same generated week of LoRA jobs, against a fair static fleet
and the cost lower bound.

A 7-day trace (seeded: arrivals that follow the working day, 20% interactive / 50%
standard / 30% batch, heavy-tailed durations, log-normal prediction error, sigma 0.12) is replayed by
``lora_tasks.scheduling.simulate`` (the same code as its ``replay`` command) with 4-minute
node start-up and the prices of include/scheduling.yaml: the smallest static fleet that
meets predictive's service levels (found by search), reactive and predictive, with node
pools unbounded and bounded by include/gpu_types.yaml's max_count, each as a multiple of
the cost lower bound. Prints the table, the targets, writes a chart, and ends with
``saving <percent>``: predictive against the fair static fleet, unbounded pools.

A second table replays the same week at ``--overload`` times the jobs on the bounded pools, where
capacity is short: admission refuses the batch jobs it cannot finish in time (each policy predicts on
the capacity it can have) and "predictive-no-admission" takes every job, to show what that buys. Cost
is judged against the lower bound of the jobs each row admitted.

    python bench/scheduling_policies.py [--seed 1] [--days 7] [--overload 2] [--chart build/bench/scheduling.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from lora_tasks.gpu_types import load_gpu_types
    from lora_tasks.scheduling.simulate.__main__ import describe, verdict
    from lora_tasks.scheduling.simulate.compare import NO_ADMISSION, POLICIES, compare, markdown_table
    from lora_tasks.scheduling.simulate.mechanics import Mechanics
    from lora_tasks.scheduling.simulate.report import chart
    from lora_tasks.scheduling.simulate.trace import generated_week
    from lora_tasks.scheduling.windows import load_calendar
    from lora_tasks.settings import platform_settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--overload", type=float, default=2.0)
    parser.add_argument("--chart", type=Path, default=ROOT / "build" / "bench" / "scheduling.png")
    args = parser.parse_args()
    settings = platform_settings()
    calendar = load_calendar(settings.scheduling_file)
    max_count = {name: t.max_count for name, t in load_gpu_types(settings.gpu_types_file).items()}
    jobs = generated_week(calendar, args.days, args.seed)
    began = time.perf_counter()
    comparison = compare(jobs, calendar, max_count, Mechanics())
    print(describe(jobs))
    print(markdown_table(comparison))
    print("\n".join(verdict(comparison)))
    print(f"replayed in {time.perf_counter() - began:.1f} s ({len(comparison.rows)} rows and the static searches)")
    heavy = generated_week(calendar, args.days, args.seed, 180 * args.overload)
    overload = compare(heavy, calendar, max_count, Mechanics(), (*POLICIES, NO_ADMISSION), pools=("bounded",))
    print(f"\n{args.overload:g}x the load on the bounded pools: {describe(heavy)}")
    print(markdown_table(overload))
    checks, savings = {}, {}
    for pools in ("unbounded", "bounded"):
        static, reactive, predictive = (comparison.row(pools, p).report for p in ("static", "reactive", "predictive"))
        savings[pools] = 1 - predictive["cost"] / static["cost"]
        p95 = "interactive_wait_p95_min"
        reactive_cut = 1 - predictive[p95] / reactive[p95] if reactive[p95] else 0.0
        checks |= {
            f"{pools}: predictive costs >= 30% less than the fair static fleet": savings[pools] >= 0.30,
            f"{pools}: interactive p95 >= 40% lower than reactive's": reactive_cut >= 0.40,
            f"{pools}: cost <= 110% of reactive's ({predictive['cost'] / reactive['cost']:.0%})":
                predictive["cost"] <= 1.10 * reactive["cost"],
            f"{pools}: no deadline misses": predictive["batch_deadline_misses"] + predictive["standard_deadline_misses"]
                == 0,
            f"{pools}: every job finished, in every policy": all(
                r.report["unfinished"] == 0 for r in comparison.rows if r.pools == pools),
        }
    bounded = comparison.row("bounded", "predictive")
    short, unasked = overload.row("bounded", "predictive").report, overload.row("bounded", NO_ADMISSION).report
    p = bounded.report
    checks |= {  # the goals, printed whether met or not
        f"goal: bounded predictive <= 1.05x the lower bound ({p['cost'] / bounded.bound:.2f}x)":
            p["cost"] <= 1.05 * bounded.bound,
        f"goal: interactive p95 <= 1 min ({p['interactive_wait_p95_min']:.1f})": p["interactive_wait_p95_min"] <= 1,
        f"goal: standard p95 <= 30 min ({p['standard_wait_p95_min']:.1f})": p["standard_wait_p95_min"] <= 30,
        f"goal: {args.overload:g}x load, no misses among jobs promised in time ({short['broken_promises']})":
            short["broken_promises"] == 0,
        f"{args.overload:g}x load: admission refuses {short['refused']} and misses "
        f"{short['batch_deadline_misses'] + short['standard_deadline_misses']} deadlines, taking every job misses "
        f"{unasked['batch_deadline_misses'] + unasked['standard_deadline_misses']}":
            short["batch_deadline_misses"] + short["standard_deadline_misses"]
            < unasked["batch_deadline_misses"] + unasked["standard_deadline_misses"],
    }
    for check, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {check}")
    args.chart.parent.mkdir(parents=True, exist_ok=True)
    drawn = {f"{r.policy} (bounded)": r.simulation for r in comparison.rows if r.pools == "bounded"}
    print(f"chart: {chart(drawn, args.chart)}")
    print(f"saving {savings['unbounded']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
