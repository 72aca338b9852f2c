"""Admission and fair sharing: the forecast a run is promised by, the decision, and tenants sharing a short
fleet, alone and in the simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lora_tasks.scheduling.admission import (
    decide,
    forecast,
    forecast_from_open,
    reserved_gpus,
)
from lora_tasks.scheduling.fair_share import FairShare
from lora_tasks.scheduling.planner import Job, PlannerConfig
from lora_tasks.scheduling.simulate import simulate
from lora_tasks.scheduling.simulate.engine import Simulation
from lora_tasks.scheduling.simulate.mechanics import Mechanics
from lora_tasks.scheduling.simulate.policies import StaticPolicy
from lora_tasks.scheduling.simulate.trace import TraceJob
from lora_tasks.scheduling.windows import load_calendar

CALENDAR = load_calendar()
MONDAY = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # 09:00 in Paris: peak hours until 22:00
CONFIG = PlannerConfig()
HOUR = timedelta(hours=1)
STEADY = Mechanics(boot_sigma=0.0, boot_tail_share=0.0)


def job(run_id: str, priority: str = "standard", minutes: float = 60, at: float = 0, tenant: str = "a",
        started: float | None = None, deadline: datetime | None = None) -> Job:
    return Job(run_id, priority, MONDAY + timedelta(minutes=at), minutes * 60, deadline,
               None if started is None else MONDAY + timedelta(minutes=started), tenant)


def test_the_forecast_places_the_queue_ahead_on_the_gpus_that_free_first() -> None:
    """Two GPUs busy for 30 and 90 more minutes, two jobs of an hour ahead: the new one starts when the
    first of those is done (at 90 minutes), and finishes an hour later."""
    ahead = [job("q1"), job("q2")]
    predicted = forecast([30 * 60, 90 * 60], ahead, job("new"), MONDAY, CALENDAR, CONFIG, gpus=2, up=2)
    assert predicted.start == MONDAY + timedelta(minutes=90) and predicted.finish == predicted.start + HOUR
    assert predicted.ahead == 2 and predicted.gpus == 2
    more = forecast([30 * 60, 90 * 60], ahead, job("new"), MONDAY, CALENDAR, CONFIG, gpus=4, up=2)
    assert more.start == MONDAY + timedelta(minutes=30)  # the queue on two nodes the bound allows, once booted
    held = forecast([30 * 60, 90 * 60], ahead, job("new"), MONDAY, CALENDAR, CONFIG, gpus=4, up=2, reserved=2)
    assert held.start == predicted.start  # two of the four left to the higher classes' coming work


def test_a_batch_job_is_forecast_in_the_night_unless_its_deadline_forces_it() -> None:
    night = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)  # 22:00 in Paris
    relaxed = forecast([], [], job("b", "batch", deadline=MONDAY + 36 * HOUR), MONDAY, CALENDAR, CONFIG, 4, 4)
    assert relaxed.start == night
    urgent = job("b", "batch", deadline=MONDAY + 3 * HOUR)
    forced = forecast([], [], urgent, MONDAY, CALENDAR, CONFIG, 4, 4)
    assert forced.start == MONDAY + 3 * HOUR - 1.25 * HOUR - CONFIG.node_startup  # planner.latest_start


def test_a_late_run_is_refused_or_taken_later_by_the_tenants_policy() -> None:
    predicted = forecast([], [job("q1"), job("q2")], job("new", "batch"), MONDAY, CALENDAR, CONFIG, 1, 1)
    deadline = MONDAY + 30 * HOUR  # the night starts at 21:00 UTC, the queue's two hours before it
    assert decide(predicted, deadline, "batch", {}).outcome == "accept"
    tight = predicted.start + timedelta(minutes=70)  # the hour fits, not with the 25% margin durations need
    refused = decide(predicted, tight, "batch", {})
    assert refused.outcome == "refuse"
    message = refused.refusal("l4")
    assert "cannot be met" in message and "finish about 2026-11-23 22:00 UTC" in message
    assert "Fix: set job.deadline to 2026-11-23 23:00 UTC or later" in message and "max_count of l4" in message
    assert decide(predicted, tight, "batch", {"batch": "accept"}).outcome == "accept-later"
    assert decide(predicted, tight, "standard", {}).outcome == "accept-later"  # standard: taken by default
    assert decide(predicted, None, "batch", {}).outcome == "accept"
    assert refused.record()["outcome"] == "refuse" and refused.record()["predicted_finish"].startswith("2026-11-23T22")


def test_a_forecast_leaves_the_higher_classes_their_recent_demand() -> None:
    demand = {"interactive": 12 * 3600.0, "standard": 60 * 3600.0, "batch": 500 * 3600.0}  # GPU-seconds a day
    assert reserved_gpus("batch", demand) == 4 and reserved_gpus("standard", demand) == 1  # x 4/3: 3 -> 4
    assert reserved_gpus("interactive", demand) == 0


def test_fair_share_tags_a_flooding_tenant_behind_the_others() -> None:
    fair = FairShare()
    flood = [fair.tag("standard", "a", 3600) for _ in range(5)]
    assert flood == [0, 3600, 7200, 10800, 14400]
    fair.started("standard", 0)
    assert fair.tag("standard", "b", 3600) == 0  # b's first job is served after a's first, before a's second
    fair.started("standard", 7200)
    assert fair.peek("standard", "c") == 7200  # an idle tenant starts at the virtual time: no hoarded credit
    assert fair.peek("batch", "a") == 0  # classes are shared apart


def test_the_ledger_forecast_orders_the_queue_by_fair_share() -> None:
    """Tenant a queued four hours of work before b's job: b is served after a's running job and before the
    rest of a's queue, so b starts when the one GPU frees."""
    open_jobs = [job("a1", started=0, tenant="a"), *(job(f"a{i}", at=i, tenant="a") for i in range(2, 6))]
    mine = job("b1", at=10, tenant="b")
    predicted = forecast_from_open(open_jobs, mine, MONDAY + timedelta(minutes=10), CALENDAR, CONFIG, 1, 1)
    assert predicted.ahead == 0 and predicted.start == MONDAY + HOUR
    fifo = forecast([50 * 60], open_jobs[1:], mine, MONDAY + timedelta(minutes=10), CALENDAR, CONFIG, 1, 1)
    assert fifo.start == MONDAY + 5 * HOUR  # what first come, first served would promise


def trace_job(run_id: str, tenant: str, at: float, minutes: float = 60, priority: str = "standard",
              deadline: timedelta | None = None) -> TraceJob:
    submitted = MONDAY + timedelta(minutes=at)
    return TraceJob(run_id, submitted, tenant, priority, "l4", minutes * 60, minutes * 60,
                    submitted + deadline if deadline else None)


def test_no_tenant_starves_another_on_a_short_fleet() -> None:
    """Tenant a floods one GPU with ten hours of work; b's two jobs, five minutes later, take turns with a's
    (b0 after a's running job, b1 after a1) instead of waiting for all ten."""
    work = [trace_job(f"a{i}", "a", i * 0.1) for i in range(10)] + [trace_job("b0", "b", 5), trace_job("b1", "b", 6)]
    _, sim = simulate(work, StaticPolicy({"l4": 1}), CALENDAR, {}, STEADY)
    assert sim.finished == 12
    assert sim.waited["b0"] <= 60 * 60 and sim.waited["b1"] <= 3 * 60 * 60
    assert max(sim.waited[f"a{i}"] for i in range(10)) >= 10 * 3600  # a's last job waits for b's two


def test_the_simulator_refuses_a_batch_job_it_cannot_finish_in_time_and_keeps_its_promises() -> None:
    """One GPU, twelve hours of standard work queued: a batch job due in 90 minutes is refused at submission
    (even served first once it must start, it would start at the hour and finish at two), one due in two
    days is accepted and finished in time; with a tenant policy that accepts late jobs, the first is taken
    and misses."""
    queue = [trace_job(f"s{i}", "a", 0, deadline=timedelta(days=1)) for i in range(12)]
    due_soon = trace_job("b-soon", "b", 1, priority="batch", deadline=timedelta(minutes=90))
    due_later = trace_job("b-later", "b", 2, priority="batch", deadline=timedelta(days=2))
    report, sim = simulate([*queue, due_soon, due_later], StaticPolicy({"l4": 1}), CALENDAR, {}, STEADY)
    assert report["refused"] == 1 and report["unfinished"] == 0 and sim.finished == 13
    assert sim.refused == {"b-soon"} and "b-soon" not in sim.waited
    assert report["batch_deadline_misses"] == 0 and report["broken_promises"] == 0
    taking = Simulation(CALENDAR, StaticPolicy({"l4": 1}), {}, STEADY, late={"batch": "accept"})
    taking.run([*queue, due_soon, due_later])
    assert taking.accepted_late["batch"] == 1 and taking.misses["batch"] == 1 and taking.broken_promises == 0
    unasked = Simulation(CALENDAR, StaticPolicy({"l4": 1}), {}, STEADY, late=None)  # no admission at all
    unasked.run([*queue, due_soon, due_later])
    assert unasked.finished == 14 and not unasked.refused and unasked.misses["batch"] == 1


def test_a_job_that_must_start_now_goes_before_the_standard_queue() -> None:
    """Three hours of standard work in half-hour jobs (due tomorrow) on one GPU; a half-hour batch job due in
    2 h 40 min must start by about 1 h 58 min: it takes the GPU that frees at 2 h, ahead of the queue."""
    queue = [trace_job(f"s{i}", "a", 0, minutes=30, deadline=timedelta(days=1)) for i in range(6)]
    due = trace_job("b", "b", 1, minutes=30, priority="batch", deadline=timedelta(hours=2, minutes=39))
    sim = Simulation(CALENDAR, StaticPolicy({"l4": 1}), {}, STEADY, late=None)
    sim.run([*queue, due])
    assert sim.misses["batch"] == 0 and sim.waited["b"] == pytest.approx(119 * 60)
    assert max(sim.waited[f"s{i}"] for i in range(6)) == pytest.approx(3 * 3600)  # the last standard job waits for it
