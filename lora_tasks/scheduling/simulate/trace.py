"""Workload traces: jobs with their arrival, priority, GPU type, predicted and actual seconds and
deadline, read from (and written to) CSV, or generated as a realistic working week."""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

from lora_tasks.errors import LoraTaskError
from lora_tasks.scheduling.admission import PRIORITY_ORDER
from lora_tasks.scheduling.windows import OffPeakCalendar

COLUMNS = ["submit_time", "tenant", "priority", "gpu_type", "predicted_seconds", "actual_seconds", "deadline"]

__all__ = ["PRIORITY_ORDER", "TraceJob", "generate_trace", "generated_week", "read_trace", "write_trace"]


@dataclass(frozen=True)
class TraceJob:
    run_id: str
    submitted_at: datetime
    tenant: str
    priority: str
    gpu_type: str
    predicted_seconds: float
    actual_seconds: float
    deadline: datetime | None


def _time(value: str, where: str, zone: tzinfo) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise LoraTaskError(f"{where}: {value!r} is not an ISO 8601 time. Fix: write it as "
                            "2026-11-02T09:30:00 (the calendar's time zone) or with an offset, +01:00") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)


def read_trace(path: Path, gpu_types: set[str] | None = None, zone: tzinfo = UTC) -> list[TraceJob]:
    """Load and check a trace: columns, order, durations, priorities and GPU types. Times without
    an offset are wall-clock times in ``zone`` (the calendar's)."""
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise LoraTaskError(f"{path} cannot be read ({exc.strerror}). Fix: give the path of a CSV trace") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise LoraTaskError(f"{path}: missing columns {', '.join(missing)}. Fix: the header must be "
                                f"{','.join(COLUMNS)}")
        jobs = []
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            submitted = _time(row["submit_time"], where, zone)
            if jobs and submitted < jobs[-1].submitted_at:
                raise LoraTaskError(f"{where}: submit_time {row['submit_time']} is earlier than the line before. "
                                    "Fix: sort the trace by submit_time")
            try:
                predicted, actual = float(row["predicted_seconds"]), float(row["actual_seconds"])
            except ValueError:
                raise LoraTaskError(f"{where}: durations must be numbers of seconds") from None
            if predicted <= 0 or actual <= 0:
                raise LoraTaskError(f"{where}: durations must be positive, got predicted {predicted}, actual "
                                    f"{actual}")
            if row["priority"] not in PRIORITY_ORDER:
                raise LoraTaskError(f"{where}: priority {row['priority']!r} is not interactive, standard or batch")
            if gpu_types is not None and row["gpu_type"] not in gpu_types:
                raise LoraTaskError(f"{where}: GPU type {row['gpu_type']!r} is unknown. Fix: use one of "
                                    f"{', '.join(sorted(gpu_types))}")
            deadline = _time(row["deadline"], where, zone) if row["deadline"] else None
            if deadline is not None and deadline <= submitted:
                raise LoraTaskError(f"{where}: deadline {row['deadline']} is not after submit_time "
                                    f"{row['submit_time']}. Fix: leave it empty for no deadline")
            jobs.append(TraceJob(f"job-{line - 1:05d}", submitted, row["tenant"], row["priority"],
                                 row["gpu_type"], predicted, actual, deadline))
    return jobs


def write_trace(path: Path, jobs: list[TraceJob]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for job in jobs:
            writer.writerow([job.submitted_at.isoformat(), job.tenant, job.priority, job.gpu_type,
                             f"{job.predicted_seconds:.0f}", f"{job.actual_seconds:.0f}",
                             job.deadline.isoformat() if job.deadline else ""])


def generated_week(calendar: OffPeakCalendar, days: int = 7, seed: int = 1,
                   jobs_per_day: float = 180) -> list[TraceJob]:
    """The default workload of the bench and ``replay``: ``generate_trace`` from Monday 2 November 2026."""
    start = datetime(2026, 11, 2, tzinfo=calendar.zone).astimezone(UTC)
    return generate_trace(start, days, seed, calendar, jobs_per_day)


def generate_trace(start: datetime, days: int, seed: int, calendar: OffPeakCalendar,
                   jobs_per_day: float = 180, gpu_mix: dict[str, float] | None = None) -> list[TraceJob]:
    """A realistic week: arrivals follow the working day (local time, quieter at weekends),
    20% interactive / 50% standard / 30% batch, heavy-tailed durations, predictions within ~15%."""
    rng = random.Random(seed)
    gpu_mix = gpu_mix or {"a100-80g": 0.6, "l4": 0.4}
    jobs, moment, end = [], start, start + timedelta(days=days)
    peak_rate = jobs_per_day / 24 * 2.2  # thinning: draw at the peak rate, keep by the hour's share

    def rate(at: datetime) -> float:
        local = at.astimezone(calendar.zone)
        hour = local.hour + local.minute / 60
        daily = 0.15 + 0.85 * math.exp(-((hour - 14.0) ** 2) / (2 * 3.5**2))
        return jobs_per_day / 24 * 2.2 * daily * (0.35 if local.weekday() >= 5 else 1.0)

    while True:
        moment += timedelta(hours=rng.expovariate(peak_rate))
        if moment >= end:
            return jobs
        if rng.random() > rate(moment) / peak_rate:
            continue
        priority = rng.choices(["interactive", "standard", "batch"], [0.2, 0.5, 0.3])[0]
        median = {"interactive": 900, "standard": 2400, "batch": 3600}[priority]
        actual = min(8 * 3600, max(120, rng.lognormvariate(math.log(median), 0.8)))
        predicted = actual * rng.lognormvariate(0, 0.12)
        deadline = {"interactive": None, "standard": moment + timedelta(hours=12),
                    "batch": moment + timedelta(hours=36)}[priority]
        gpu = rng.choices(list(gpu_mix), list(gpu_mix.values()))[0]
        jobs.append(TraceJob(f"job-{len(jobs) + 1:05d}", moment, f"tenant-{rng.randrange(12):02d}", priority, gpu,
                             predicted, actual, deadline))
