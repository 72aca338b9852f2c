"""The capacity planner over a real ledger: demand, decisions with their inputs, hysteresis across runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from lora_tasks.gpu_types import GpuType
from lora_tasks.ledger.store import Ledger, migrate
from lora_tasks.pipeline.capacity import main, plan
from lora_tasks.scheduling.planner import PlannerConfig
from lora_tasks.scheduling.windows import load_calendar

CALENDAR = load_calendar()
NOON = datetime(2026, 11, 24, 12, 0, tzinfo=ZoneInfo("Europe/Paris")).astimezone(UTC)
TYPES = {"l4": GpuType("l4", 22, 121, True, 16), "cpu": GpuType("cpu", 0, 0.05, False, 1)}
CONFIG = PlannerConfig(cooldown=timedelta(minutes=10), max_step_down=4)


def ledger(tmp_path: Path) -> Ledger:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    migrate(url)
    return Ledger(url)


def queue(book: Ledger, run_id: str, priority: str, seconds: float, at: datetime = NOON) -> None:
    book.register_run(run_id, tenant="acme", job=run_id, priority=priority, gpu_type="l4",
                      submitted_at=at - timedelta(minutes=1))
    book.record_prediction(run_id, seconds=seconds, low=seconds / 2, high=seconds * 2, peak_bytes=None, features={})


def test_decisions_follow_the_queue_and_are_recorded(tmp_path: Path) -> None:
    book = ledger(tmp_path)
    for i in range(3):
        queue(book, f"std-{i}", "standard", 7200)
    queue(book, "int-0", "interactive", 600)
    book.register_run("not-checked-yet", tenant="acme", job="x", priority="standard", gpu_type="l4",
                      submitted_at=NOON)  # no prediction yet: still in intake, not demand
    [decision] = plan(book, CALENDAR, TYPES, NOON, CONFIG)
    assert (decision.gpu_type, decision.current, decision.applied) == ("l4", 0, decision.desired)
    assert decision.desired == 4 + 1  # 3 h of standard work due within the hour, 1 interactive, 1 warm
    assert decision.inputs["queued"] == 4 and "GPU-hours due" in decision.reason
    assert [d.applied for d in book.decisions("l4")] == [5]


def test_hysteresis_survives_between_runs(tmp_path: Path) -> None:
    book = ledger(tmp_path)
    for i in range(4):
        queue(book, f"std-{i}", "standard", 3600)
    assert plan(book, CALENDAR, TYPES, NOON, CONFIG)[0].applied == 4
    for i in range(4):  # the work finished
        book.close_run(f"std-{i}", "success", NOON + timedelta(minutes=2))
    later = [plan(book, CALENDAR, TYPES, NOON + timedelta(minutes=m), CONFIG)[0].applied for m in (5, 10, 16)]
    assert later == [4, 4, 0]  # held through the cool-down, then released
    assert book.decisions("l4")[-1].desired == 0


def test_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    from lora_tasks.settings import platform_settings

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    migrate(url)
    book = Ledger(url)
    queue(book, "a", "standard", 3600)
    queue(book, "b", "standard", 3600)
    monkeypatch.setenv("LORA_LEDGER_URL", url)
    platform_settings.cache_clear()
    try:
        assert main(["plan", "--now", NOON.isoformat()]) == 0
    finally:
        platform_settings.cache_clear()
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "(0 running, 2 queued)" in lines["l4"] and "wish 0)" not in lines["l4"]  # the queue is read and wanted
    assert "wish 0)" in lines["a100-80g"]  # nothing queued there


def test_the_dag_decides_like_one_long_lived_hysteresis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each planner run rebuilds its state from the ledger; the simulator keeps one object. Both
    must turn the same wishes into the same decisions."""
    from lora_tasks.pipeline import capacity
    from lora_tasks.scheduling.planner import Hysteresis, Wish

    wishes = [10, 6, 6, 3, 3, 3, 0, 0, 0, 2, 2, 1]
    times = [NOON + timedelta(minutes=5 * i) for i in range(len(wishes))]
    memory = Hysteresis(CONFIG)
    expected, current = [], 0
    for at, wish in zip(times, wishes, strict=True):
        current = memory.decide(current, wish, at)
        expected.append(current)
    script = iter(wishes)
    monkeypatch.setattr(capacity, "desired_gpus", lambda *_: Wish(next(script), "scripted"))
    book = ledger(tmp_path)
    got = [plan(book, CALENDAR, {"l4": TYPES["l4"]}, at, CONFIG)[0].applied for at in times]
    assert got == expected
