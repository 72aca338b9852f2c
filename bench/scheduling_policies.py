"""Three capacity policies on the same generated week of LoRA jobs.

A 7-day trace (seeded: arrivals that follow the working day, 20% interactive / 50%
standard / 30% batch, heavy-tailed durations, predictions within about 15%) is replayed by
``lora_tasks.scheduling.simulate`` under the static, reactive and predictive policies,
with 4-minute node start-up and the prices of include/scheduling.yaml. Prints the table,
the targets, writes a chart, and ends with ``saving <percent>``: predictive against static.

    python bench/scheduling_policies.py [--seed 1] [--days 7] [--chart build/bench/scheduling.png]
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from lora_tasks.scheduling.simulate import simulate
    from lora_tasks.scheduling.simulate.report import chart
    from lora_tasks.scheduling.simulate.trace import PRIORITY_ORDER, generate_trace
    from lora_tasks.scheduling.windows import load_calendar

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--chart", type=Path, default=ROOT / "build" / "bench" / "scheduling.png")
    args = parser.parse_args()
    calendar = load_calendar()
    start = datetime(2026, 11, 2, tzinfo=calendar.zone).astimezone(UTC)  # a Monday
    jobs = generate_trace(start, args.days, args.seed, calendar)
    reports, sims = {}, {}
    for name in ("static", "reactive", "predictive"):
        reports[name], sims[name] = simulate(jobs, name, calendar, max_count={})  # node pools unbounded
    print(f"{len(jobs)} jobs over {args.days} days: " + ", ".join(
        f"{sum(j.priority == p for j in jobs)} {p}" for p in PRIORITY_ORDER))
    print("| policy | GPU-hours | cost (USD) | utilisation | interactive wait p50 / p95 (min) | standard p50 / p95 "
          "| batch p50 / p95 | deadline misses (std / batch) | batch run off-peak | preemptions |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in reports.items():
        print(f"| {name} | {r['gpu_hours']:.0f} | {r['cost']:.0f} | {r['utilisation']:.0%} "
              f"| {r['interactive_wait_p50_min']:.1f} / {r['interactive_wait_p95_min']:.1f} "
              f"| {r['standard_wait_p50_min']:.1f} / {r['standard_wait_p95_min']:.1f} "
              f"| {r['batch_wait_p50_min']:.0f} / {r['batch_wait_p95_min']:.0f} "
              f"| {r['standard_deadline_misses']} / {r['batch_deadline_misses']} "
              f"| {r['batch_off_peak_share']:.0%} | {r['preemptions']} |")
    static, reactive, predictive = reports["static"], reports["reactive"], reports["predictive"]
    saving = 1 - predictive["cost"] / static["cost"]
    p95 = "interactive_wait_p95_min"
    reactive_cut = 1 - predictive[p95] / reactive[p95] if reactive[p95] else 0.0
    checks = {
        "predictive costs >= 30% less than static": saving >= 0.30,
        "interactive p95 no worse than static's": predictive[p95] <= static[p95] + 1e-9,
        "interactive p95 >= 40% lower than reactive's": reactive_cut >= 0.40,
        "cost <= 110% of reactive's": predictive["cost"] <= 1.10 * reactive["cost"],
        "no batch deadline misses": predictive["batch_deadline_misses"] == 0,
        "every job finished, in every policy": all(r["unfinished"] == 0 for r in reports.values()),
    }
    for check, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {check}")
    args.chart.parent.mkdir(parents=True, exist_ok=True)
    print(f"chart: {chart(sims, args.chart)}")
    print(f"saving {saving:.1%}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
