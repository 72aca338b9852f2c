"""The predictive policy's arithmetic with a frozen clock: due work, batch windows, headroom, hysteresis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lora_tasks.scheduling.planner import Hysteresis, Job, PlannerConfig, desired_gpus, interactive_forecast
from lora_tasks.scheduling.windows import load_calendar

CALENDAR = load_calendar()
PARIS = ZoneInfo("Europe/Paris")
NOON = datetime(2026, 11, 24, 12, 0, tzinfo=PARIS).astimezone(UTC)  # a Tuesday, peak hours
NIGHT = datetime(2026, 11, 24, 23, 0, tzinfo=PARIS).astimezone(UTC)
CONFIG = PlannerConfig()
HOUR = 3600.0


def job(priority: str, seconds: float, *, running_for: float | None = None, deadline_in: float | None = None,
        at: datetime = NOON) -> Job:
    started = at - timedelta(seconds=running_for) if running_for is not None else None
    deadline = at + timedelta(seconds=deadline_in) if deadline_in is not None else None
    return Job(f"r-{priority}-{seconds}-{running_for}", priority, at - timedelta(minutes=5), seconds, deadline, started)


@pytest.mark.parametrize(
    ("jobs", "now", "rate", "gpus"),
    [
        ([], NOON, 0.0, 0),
        ([], NOON, 2.0, 1),  # an empty fleet keeps one warm GPU when interactive jobs are expected
        ([job("standard", HOUR, running_for=0)], NOON, 2.0, 1),  # a preemptable job is the headroom
        ([job("interactive", HOUR, running_for=0)], NOON, 2.0, 2),
        ([job("interactive", 600)] * 3, NOON, 0.0, 3),  # every queued interactive job starts now
        ([job("standard", 2 * HOUR)] * 3, NOON, 0.0, 3),  # three GPU-hours due within the hour: 3 GPUs
        ([job("standard", 600, running_for=3000), job("standard", 1200)], NOON, 0.0, 1),  # one ends soon
        ([job("batch", 2 * HOUR)] * 4, NOON, 0.0, 0),  # batch waits for off-peak...
        ([job("batch", 2 * HOUR, deadline_in=2.2 * HOUR)], NOON, 0.0, 1),  # ...unless its deadline is near
        ([job("standard", 600)] * 4, NOON, 0.0, 1),  # 40 minutes of work: one GPU works through it in time...
        ([job("standard", 600, deadline_in=900)] * 4, NOON, 0.0, 4),  # ...unless each must start now to be in time
        ([job("batch", 2 * HOUR, at=NIGHT)] * 4, NIGHT, 0.0, 2),  # 8 GPU-hours over the 7 left of the window
    ],
)
def test_desired_gpus(jobs: list[Job], now: datetime, rate: float, gpus: int) -> None:
    assert desired_gpus(jobs, now, CALENDAR, CONFIG, rate, max_count=100).gpus == gpus


def test_capped_by_the_node_pool_and_explained() -> None:
    wish = desired_gpus([job("interactive", 600)] * 9, NOON, CALENDAR, CONFIG, 0.0, max_count=4)
    assert wish.gpus == 4
    assert "9 queued" in wish.reason and wish.inputs["queued_interactive"] == 9


def test_hysteresis_scales_up_at_once_and_down_after_a_cooldown() -> None:
    h = Hysteresis(PlannerConfig(cooldown=timedelta(minutes=10), max_step_down=2))
    assert h.decide(2, 6, NOON) == 6
    assert h.decide(6, 1, NOON + timedelta(minutes=5)) == 6  # lower for 0 minutes: hold
    assert h.decide(6, 1, NOON + timedelta(minutes=12)) == 6  # lower for 7 minutes: hold
    assert h.decide(6, 1, NOON + timedelta(minutes=16)) == 4  # 11 minutes: step down by 2
    assert h.decide(4, 1, NOON + timedelta(minutes=20)) == 4  # a change needs a cool-down too
    assert h.decide(4, 4, NOON + timedelta(minutes=21)) == 4 and h.lower_since is None


def test_a_large_fleet_steps_down_by_a_share_of_itself() -> None:
    h = Hysteresis(PlannerConfig(cooldown=timedelta(minutes=5)))  # at least 4, else a quarter of the fleet
    assert h.decide(40, 0, NOON) == 40
    assert h.decide(40, 0, NOON + timedelta(minutes=5)) == 30
    assert h.decide(30, 0, NOON + timedelta(minutes=10)) == 22
    assert Hysteresis(PlannerConfig(cooldown=timedelta(0))).decide(8, 0, NOON) == 4  # small fleets: the floor


def test_forecast_uses_the_same_hour_of_previous_days() -> None:
    arrivals = sorted(NOON - timedelta(days=d, minutes=m) + timedelta(minutes=30) for d in (1, 2, 3) for m in (0, 10))
    assert interactive_forecast(arrivals, NOON, CALENDAR) == pytest.approx(2.0)
    assert interactive_forecast(arrivals, NOON + timedelta(hours=6), CALENDAR) == 0.0
    assert interactive_forecast([NOON - timedelta(minutes=m) for m in range(4, -1, -1)], NOON, CALENDAR) == 5.0
