"""The simulator: trace checks, the policies' behaviour on small traces, the generator and the CLI."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lora_tasks.errors import LoraTaskError
from lora_tasks.scheduling.planner import PlannerConfig
from lora_tasks.scheduling.simulate import simulate
from lora_tasks.scheduling.simulate.__main__ import main
from lora_tasks.scheduling.simulate.baseline import ServiceLevels, fair_static_fleet
from lora_tasks.scheduling.simulate.bounds import (
    cost_lower_bound,
    job_lower_bound,
    prompt_lower_bound,
    service_level_bound,
)
from lora_tasks.scheduling.simulate.compare import POLICIES, compare
from lora_tasks.scheduling.simulate.mechanics import Mechanics
from lora_tasks.scheduling.simulate.policies import PredictivePolicy, ReactivePolicy, StaticPolicy, peak_fleet
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
        (HEADER, "2026-11-23T09:00:00,a,standard,l4,60,60,2026-11-23T08:00:00\n", "is not after submit_time"),
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


def test_the_static_baseline_is_the_smallest_fleet_meeting_the_levels() -> None:
    """Peak concurrency would buy 4 GPUs; one finishing before the next starts serves as well."""
    work = jobs(("standard", 0, 60), ("standard", 10, 60), ("standard", 20, 60), ("standard", 30, 60),
                ("standard", 300, 30))
    assert peak_fleet(work) == {"l4": 4}
    levels = ServiceLevels(interactive_p95_min=0, standard_p95_min=40, deadline_misses=0, unfinished=0, refused=0)
    base = fair_static_fleet(work, CALENDAR, {}, Mechanics(), levels)
    assert base.fleet == {"l4": 2} and base.meets_levels
    assert base.report["standard_wait_p95_min"] <= 40
    one, _ = simulate(work, StaticPolicy({"l4": 1}), CALENDAR, {})
    assert not levels.met_by(one)  # one GPU lets the fourth job wait three hours
    capped = fair_static_fleet(work, CALENDAR, {"l4": 1}, Mechanics(), levels)
    assert capped.fleet == {"l4": 1} and not capped.meets_levels  # the pool's maximum cannot meet them


def test_the_lower_bound_pays_each_job_once_at_the_cheapest_price_its_deadline_allows() -> None:
    l4 = CALENDAR.price("l4")
    hour = timedelta(hours=1)
    standard = TraceJob("s", MONDAY, "t", "standard", "l4", 3600, 3600, MONDAY + 12 * hour)  # 09:00-21:00 Paris
    batch = TraceJob("b", MONDAY, "t", "batch", "l4", 3600, 3600, MONDAY + 36 * hour)  # reaches Monday night
    tight = TraceJob("t", MONDAY + 12 * hour + timedelta(minutes=30), "t", "standard", "l4", 3600, 3600,
                     MONDAY + 14 * hour)  # 21:30 Paris, due 23:00: half an hour before the window, an hour in
    interactive = TraceJob("i", MONDAY + 14 * hour, "t", "interactive", "l4", 7200, 7200, None)  # 23:00 Paris
    assert job_lower_bound(standard, CALENDAR) == pytest.approx(l4.peak)
    assert job_lower_bound(batch, CALENDAR) == pytest.approx(l4.off_peak)
    assert job_lower_bound(tight, CALENDAR) == pytest.approx(l4.off_peak)
    squeezed = replace(tight, deadline=MONDAY + 13 * hour + timedelta(minutes=30))  # 22:30: 30 min off-peak left
    assert job_lower_bound(squeezed, CALENDAR) == pytest.approx((l4.peak + l4.off_peak) / 2)
    assert job_lower_bound(interactive, CALENDAR) == pytest.approx(2 * l4.off_peak)  # no waiting for cheaper hours
    assert cost_lower_bound([standard, batch], CALENDAR) == pytest.approx(l4.peak + l4.off_peak)


def test_the_service_level_bound_lets_only_one_standard_job_in_twenty_wait_for_the_night() -> None:
    l4, hour = CALENDAR.price("l4"), timedelta(hours=1)
    evening = [TraceJob(f"s{i}", MONDAY + 11 * hour, "t", "standard", "l4", 3600, 3600, MONDAY + 23 * hour)
               for i in range(20)]  # 20:00 Paris: the night is two hours away, the deadline half a day
    assert cost_lower_bound(evening, CALENDAR) == pytest.approx(20 * l4.off_peak)  # all wait for the night
    assert service_level_bound(evening, CALENDAR) == pytest.approx(19 * l4.peak + l4.off_peak)  # p95 <= 30 min
    late = replace(evening[0], submitted_at=MONDAY + 12 * hour + timedelta(minutes=30))  # 21:30: starts by 22:00
    assert prompt_lower_bound(late, CALENDAR, timedelta(minutes=30)) == pytest.approx(l4.off_peak)


def test_batch_waits_for_off_peak_and_meets_its_deadline() -> None:
    report, _ = simulate(jobs(("batch", 0, 60)), PredictivePolicy(PlannerConfig()), CALENDAR, {})
    assert report["batch_off_peak_share"] == 1.0 and report["batch_deadline_misses"] == 0
    assert report["batch_wait_p50_min"] > 8 * 60  # Monday 08:00 UTC to 22:00 Paris


STEADY = Mechanics(boot_sigma=0.0, boot_tail_share=0.0)
"""Boots of exactly 4 minutes: what a test can count on."""


def test_interactive_preempts_and_the_preempted_job_pays_its_restart_and_lost_steps() -> None:
    two = jobs(("standard", 0, 120), ("interactive", 30, 10))
    report, sim = simulate(two, ReactivePolicy(), CALENDAR, {"l4": 1}, STEADY)
    assert report["preemptions"] == 1 and report["unfinished"] == 0
    assert report["interactive_wait_p95_min"] == 0
    # it trained 26 minutes (the node booted for 4) and had checkpointed at 20 (500 steps of 2.4 s on an L4):
    # it redoes 6 minutes of steps after re-queueing, starting, pulling its image and loading the model again
    redone = STEADY.restart_seconds() + 6 * 60
    assert STEADY.redone_seconds("l4", 26 * 60) == pytest.approx(redone)
    assert sim.busy_seconds == pytest.approx((120 + 10) * 60 + redone)
    assert report["redone_gpu_hours"] == pytest.approx(redone / 3600)
    waiting, _ = simulate(two, ReactivePolicy(), CALENDAR, {"l4": 1}, replace(STEADY, preemption=False))
    assert waiting["preemptions"] == 0 and waiting["interactive_wait_p95_min"] == pytest.approx(120 - 26)


def test_boots_spread_with_a_slow_tail_and_idle_nodes_outlive_the_policy() -> None:
    rng = random.Random(0)
    boots = sorted(Mechanics().boot(rng).total_seconds() for _ in range(4000))
    assert 225 < boots[len(boots) // 2] < 255 and boots[int(0.99 * len(boots))] > 480  # about 4 minutes, a tail
    assert Mechanics().mean_boot().total_seconds() == pytest.approx(sum(boots) / len(boots), rel=0.05)
    one = jobs(("standard", 0, 30))
    kept, _ = simulate(one, PredictivePolicy(PlannerConfig()), CALENDAR, {}, STEADY)
    instant = replace(STEADY, scale_down_delay=timedelta(0))
    gone, _ = simulate(one, PredictivePolicy(PlannerConfig()), CALENDAR, {}, instant)
    assert kept["gpu_hours"] > gone["gpu_hours"]  # the autoscaler keeps an unneeded node its scale-down delay


def test_policies_on_a_generated_day_finish_everything() -> None:
    start = datetime(2026, 11, 23, tzinfo=CALENDAR.zone).astimezone(UTC)
    day = generate_trace(start, 1, seed=3, calendar=CALENDAR, jobs_per_day=60)
    assert day == sorted(day, key=lambda j: j.submitted_at) and len(day) > 20
    comparison = compare(day, CALENDAR, {"a100-80g": 8, "l4": 16}, Mechanics())
    assert [(r.pools, r.policy) for r in comparison.rows] == [
        (pools, policy) for pools in ("unbounded", "bounded") for policy in POLICIES]
    for row in comparison.rows:
        assert row.report["unfinished"] == 0 and row.report["batch_deadline_misses"] == 0
        assert row.report["cost"] >= comparison.lower_bound  # no replay beats the bound
    assert comparison.service_bound >= comparison.lower_bound
    for pools in ("unbounded", "bounded"):
        static, predictive = comparison.row(pools, "static"), comparison.row(pools, "predictive")
        assert static.meets_levels and ServiceLevels.of(predictive.report).met_by(static.report)
        smaller = {gpu: n - 1 if gpu == "a100-80g" else n for gpu, n in static.fleet.items()}
        fewer, _ = simulate(day, StaticPolicy(smaller), CALENDAR, {})
        assert not ServiceLevels.of(predictive.report).met_by(fewer)  # the baseline is the smallest such fleet
        assert predictive.report["cost"] < static.report["cost"]


def test_cli_replays_a_trace_against_the_fair_baseline_and_the_bound(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = ("2026-11-23T09:00:00,a,standard,l4,3600,3600,2026-11-23T21:00:00\n"
            "2026-11-23T09:10:00,b,standard,l4,3600,3600,2026-11-23T21:00:00\n"
            "2026-11-23T09:20:00,a,interactive,l4,600,600,\n")
    assert main(["replay", str(trace(tmp_path, body)), "--boot-seconds", "0", "--chart", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]): line.split("|")[3:] for line in out.splitlines()
            if line.startswith("| ")}
    # two GPUs would make a standard job wait out the interactive one that evicts it: predictive starts a third
    assert rows[("unbounded", "static")][0].strip() == "3 l4"
    l4 = CALENDAR.price("l4")
    bound = float(rows[("either", "lower bound")][2])  # naive times are Paris: all three run in peak hours
    assert bound == pytest.approx(round(l4.peak * (2 + 600 / 3600)))
    assert "3 jobs over 0.0 days: 1 interactive, 2 standard, 0 batch; 3 on l4" in out
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["replay", str(trace(tmp_path, body)), "--policy", "reactive"]) == 0
    assert [line.split("|")[2].strip() for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "---" not in line][1:] == ["reactive", "reactive", "lower bound",
                                                                             "service-level bound"]


@pytest.mark.parametrize(("argv", "message"), [
    (["replay", "missing.csv"], "missing.csv cannot be read"),
    (["replay", "--policy", "magic"], "--policy 'magic' is unknown"),
    (["replay", "--boot-seconds", "-5"], "--boot-seconds -5 is negative"),
])
def test_cli_refuses_bad_arguments_with_the_fix(argv: list[str], message: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_generates_the_default_week_as_a_trace_that_reads_back(tmp_path: Path) -> None:
    assert main(["generate", str(tmp_path / "t.csv"), "--days", "1", "--seed", "2"]) == 0
    round_trip = read_trace(tmp_path / "t.csv", zone=CALENDAR.zone)
    assert len(round_trip) > 100
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
