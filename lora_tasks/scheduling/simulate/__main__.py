"""Command line: see the package's docstring."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

from lora_tasks.cli import entry_point
from lora_tasks.errors import LoraTaskError
from lora_tasks.scheduling.simulate.compare import Comparison, compare, markdown_table, policy_names
from lora_tasks.scheduling.simulate.mechanics import Mechanics
from lora_tasks.scheduling.simulate.report import chart
from lora_tasks.scheduling.simulate.trace import PRIORITY_ORDER, TraceJob, generated_week, read_trace, write_trace
from lora_tasks.scheduling.windows import load_calendar


def describe(jobs: list[TraceJob]) -> str:
    days = (jobs[-1].submitted_at - jobs[0].submitted_at).total_seconds() / 86400 if jobs else 0.0
    gpus = sorted({j.gpu_type for j in jobs})
    return f"{len(jobs)} jobs over {days:.1f} days: " + ", ".join(
        f"{sum(j.priority == p for j in jobs)} {p}" for p in PRIORITY_ORDER) + "; " + ", ".join(
        f"{sum(j.gpu_type == g for j in jobs)} on {g}" for g in gpus)


def verdict(comparison: Comparison) -> list[str]:
    """The sentences under the table: what predictive saves against the fair static fleet."""
    lines = []
    for pools in ("unbounded", "bounded"):
        static, predictive = comparison.row(pools, "static"), comparison.row(pools, "predictive")
        if static is None or predictive is None:
            continue
        saving = 1 - predictive.report["cost"] / static.report["cost"]
        lines.append(f"{pools}: predictive costs {saving:.1%} less than the smallest static fleet meeting its "
                     f"service levels, at {predictive.report['cost'] / predictive.bound:.2f}x the lower bound "
                     f"and {predictive.report['cost'] / predictive.service:.2f}x the service-level bound")
    return lines


@entry_point
def main(argv: list[str] | None = None) -> int:
    from lora_tasks.gpu_types import load_gpu_types
    from lora_tasks.settings import platform_settings

    settings = platform_settings()
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.scheduling.simulate",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    replay = commands.add_parser("replay", help="replay a trace (default: the generated week) under the policies")
    replay.add_argument("jobs", type=Path, nargs="?", help="CSV: " + ", ".join(
        ["submit_time", "tenant", "priority", "gpu_type", "predicted_seconds", "actual_seconds", "deadline"]))
    replay.add_argument("--calendar", type=Path, default=settings.scheduling_file,
                        help="off-peak windows, time zone and prices (default: LORA_SCHEDULING_FILE)")
    replay.add_argument("--gpu-types", type=Path, default=settings.gpu_types_file,
                        help="GPU types and their max_count (default: LORA_GPU_TYPES_FILE)")
    replay.add_argument("--boot-seconds", type=float, default=240,
                        help="a node's median boot (default 240; spread and slow tail as in simulate.mechanics)")
    replay.add_argument("--scale-down-delay", type=float, default=600,
                        help="seconds an unneeded node is kept before the autoscaler removes it (default 600)")
    replay.add_argument("--no-preemption", action="store_true", help="interactive jobs wait instead of evicting")
    replay.add_argument("--policy", default="all",
                        help="static, reactive, predictive, predictive-no-preemption, predictive-no-admission "
                             "or all (default; all but the last)")
    replay.add_argument("--chart", type=Path, help="write GPUs provisioned and jobs queued over time here (PNG)")
    generate = commands.add_parser("generate", help="write the generated workload as a CSV trace")
    generate.add_argument("out", type=Path)
    generate.add_argument("--days", type=int, default=7)
    generate.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "generate":
        write_trace(args.out, generated_week(load_calendar(settings.scheduling_file), args.days, args.seed))
        print(f"wrote {args.out}")
        return 0
    for flag, value in (("--boot-seconds", args.boot_seconds), ("--scale-down-delay", args.scale_down_delay)):
        if value < 0:
            raise LoraTaskError(f"{flag} {value:g} is negative. Fix: give a number of seconds")
    mechanics = Mechanics(boot_median_seconds=args.boot_seconds, preemption=not args.no_preemption,
                          scale_down_delay=timedelta(seconds=args.scale_down_delay))
    policies = policy_names(args.policy)
    calendar, types = load_calendar(args.calendar), load_gpu_types(args.gpu_types)
    jobs = read_trace(args.jobs, set(types), calendar.zone) if args.jobs else generated_week(calendar)
    if not jobs:
        raise LoraTaskError(f"{args.jobs} holds no jobs. Fix: add rows under the header")
    comparison = compare(jobs, calendar, {n: t.max_count for n, t in types.items()}, mechanics, policies)
    print(describe(jobs))
    print(markdown_table(comparison))
    print("\n".join(verdict(comparison)))
    if args.chart:
        bounded = {f"{r.policy} (bounded)": r.simulation for r in comparison.rows if r.pools == "bounded"}
        print(f"chart: {chart(bounded, args.chart)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
