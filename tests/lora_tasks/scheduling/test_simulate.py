"""The simulator: trace checks, the policies' behaviour on small traces, the generator and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lora_tasks.errors import LoraTaskError
from lora_tasks.scheduling.simulate import simulate
from lora_tasks.scheduling.simulate.__main__ import main
from lora_tasks.scheduling.simulate.policies import peak_fleet
from lora_tasks.scheduling.simulate.trace import TraceJob, generate_trace, read_trace, write_trace
from lora_tasks.scheduling.windows import load_calendar

CALENDAR = load_calendar()
MONDAY = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
HEADER = "submit_time,tenant,priority,gpu_type,predicted_seconds,actual_seconds,deadline\n"


def trace(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(header + body)
    return path


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        ("submit_time,tenant,priority\n", "", "missing columns gpu_type, predicted_seconds"),
        (HEADER, "2026-11-23T09:00:00+00:00,a,standard,l4,60,60,\n2026-11-23T08:00:00+00:00,a,standard,l4,60,60,\n",
         "earlier than the line before"),
        (HEADER, "2026-11-23T09:00:00+00:00,a,standard,l4,60,-5,\n", "durations must be positive"),
        (HEADER, "2026-11-23T09:00:00+00:00,a,standard,l4,sixty,60,\n", "numbers of seconds"),
        (HEADER, "2026-11-23T09:00:00+00:00,a,urgent,l4,60,60,\n", "priority 'urgent'"),
        (HEADER, "2026-11-23T09:00:00+00:00,a,standard,tpu-v9,60,60,\n", "GPU type 'tpu-v9' is unknown"),
        (HEADER, "yesterday,a,standard,l4,60,60,\n", "not an ISO 8601 time"),
    ],
)
def test_bad_traces_are_refused(tmp_path: Path, header: str, body: str, message: str) -> None:
    with pytest.raises(LoraTaskError, match=message):
        read_trace(trace(tmp_path, body, header), {"l4", "a100-80g"})


def jobs(*specs: tuple[str, float, float]) -> list[TraceJob]:
    """(priority, minutes after Monday 08:00 UTC, run minutes)"""
    return [TraceJob(f"j{i}", MONDAY + timedelta(minutes=at), "t", priority, "l4", minutes * 60, minutes * 60,
                     MONDAY + timedelta(days=2) if priority == "batch" else None)
            for i, (priority, at, minutes) in enumerate(specs)]


def test_static_fleet_is_sized_for_the_peak_and_waits_for_nothing() -> None:
    work = jobs(("standard", 0, 60), ("standard", 10, 60), ("interactive", 20, 30), ("standard", 120, 30))
    assert peak_fleet(work) == {"l4": 3}
    report, _ = simulate(work, "static", CALENDAR, {})
    assert report["interactive_wait_p95_min"] == 0 and report["standard_wait_p95_min"] == 0
    assert report["unfinished"] == 0


def test_batch_waits_for_off_peak_and_meets_its_deadline() -> None:
    report, _ = simulate(jobs(("batch", 0, 60)), "predictive", CALENDAR, {})
    assert report["batch_off_peak_share"] == 1.0 and report["batch_deadline_misses"] == 0
    assert report["batch_wait_p50_min"] > 8 * 60  # Monday 08:00 UTC to 22:00 Paris


def test_interactive_preempts_and_the_preempted_job_still_finishes() -> None:
    report, sim = simulate(jobs(("standard", 0, 120), ("interactive", 30, 10)), "reactive", CALENDAR, {"l4": 1})
    assert report["preemptions"] == 1 and report["unfinished"] == 0
    assert report["interactive_wait_p95_min"] == 0
    assert sim.busy_seconds == pytest.approx((120 + 10 + 5) * 60)  # the evicted job redid one checkpoint interval


def test_policies_on_a_generated_day_finish_everything() -> None:
    start = datetime(2026, 11, 23, tzinfo=CALENDAR.zone).astimezone(UTC)
    day = generate_trace(start, 1, seed=3, calendar=CALENDAR, jobs_per_day=60)
    assert day == sorted(day, key=lambda j: j.submitted_at) and len(day) > 20
    costs = {}
    for policy in ("static", "reactive", "predictive"):
        report, _ = simulate(day, policy, CALENDAR, {})
        assert report["unfinished"] == 0 and report["batch_deadline_misses"] == 0
        costs[policy] = report["cost"]
    assert costs["predictive"] < costs["static"]


def test_cli_generates_simulates_and_charts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--generate", str(tmp_path / "t.csv"), "--days", "1", "--seed", "2"]) == 0
    assert main(["--trace", str(tmp_path / "t.csv"), "--policy", "predictive", "--chart", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "interactive_wait_p95_min" in out and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["--trace", str(tmp_path / "t.csv"), "--policy", "magic"]) == 2
    round_trip = read_trace(tmp_path / "t.csv")
    write_trace(tmp_path / "again.csv", round_trip)
    assert (tmp_path / "again.csv").read_text() == (tmp_path / "t.csv").read_text()


def test_the_generated_week_looks_like_a_working_week() -> None:
    import statistics

    start = datetime(2026, 11, 2, tzinfo=CALENDAR.zone).astimezone(UTC)  # a Monday
    week = generate_trace(start, 7, seed=1, calendar=CALENDAR)
    local = [j.submitted_at.astimezone(CALENDAR.zone) for j in week]
    weekday = [t for t in local if t.weekday() < 5]
    office = sum(9 <= t.hour < 19 for t in weekday) / len(weekday)
    assert office > 0.6  # the working day carries most arrivals
    per_day = [sum(t.weekday() == d for t in local) for d in range(7)]
    assert max(per_day[5:]) < 0.5 * min(per_day[:5])  # quieter weekends
    mix = {p: sum(j.priority == p for j in week) / len(week) for p in ("interactive", "standard", "batch")}
    assert abs(mix["interactive"] - 0.2) < 0.05 and abs(mix["standard"] - 0.5) < 0.05
    durations = sorted(j.actual_seconds for j in week)
    assert durations[int(0.95 * len(durations))] > 3 * statistics.median(durations)  # a heavy tail
    errors = [abs(j.predicted_seconds / j.actual_seconds - 1) for j in week]
    assert 0.05 < statistics.median(errors) < 0.15  # predictions good, not perfect
