"""Command line: see the package's docstring."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lora_tasks.cli import entry_point
from lora_tasks.errors import LoraTaskError
from lora_tasks.scheduling.simulate import simulate
from lora_tasks.scheduling.simulate.report import chart
from lora_tasks.scheduling.simulate.trace import generate_trace, read_trace, write_trace
from lora_tasks.scheduling.windows import load_calendar


@entry_point
def main(argv: list[str] | None = None) -> int:
    from lora_tasks.gpu_types import load_gpu_types
    from lora_tasks.settings import platform_settings

    parser = argparse.ArgumentParser(prog="python -m lora_tasks.scheduling.simulate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", type=Path)
    parser.add_argument("--policy", default="predictive")
    parser.add_argument("--generate", type=Path, help="write a generated trace here instead of simulating")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--node-startup-minutes", type=float, default=4)
    parser.add_argument("--chart", type=Path)
    args = parser.parse_args(argv)
    settings = platform_settings()
    calendar = load_calendar(settings.scheduling_file)
    types = load_gpu_types(settings.gpu_types_file)
    if args.generate:
        start = datetime(2026, 11, 2, tzinfo=calendar.zone).astimezone(UTC)  # a Monday
        write_trace(args.generate, generate_trace(start, args.days, args.seed, calendar))
        print(f"wrote {args.generate}")
        return 0
    if not args.trace:
        raise LoraTaskError("give --trace FILE (or --generate FILE)")
    jobs = read_trace(args.trace, set(types))
    report, sim = simulate(jobs, args.policy, calendar, {n: t.max_count for n, t in types.items()},
                           timedelta(minutes=args.node_startup_minutes))
    for key, value in report.items():
        print(f"{key:<28} {value:.3f}" if isinstance(value, float) else f"{key:<28} {value}")
    if args.chart:
        print(f"chart: {chart({args.policy: sim}, args.chart)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
