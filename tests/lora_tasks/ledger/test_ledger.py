"""The ledger on SQLite and on the machine's PostgreSQL: idempotent writes, billing, the bill CLI."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta

import pytest

from lora_tasks.errors import LoraTaskError
from lora_tasks.ledger import Ledger
from lora_tasks.ledger.__main__ import main
from lora_tasks.ledger.store import migrate
from lora_tasks.scheduling.windows import load_calendar
from tests.lora_tasks.ledger.conftest import postgres

CALENDAR = load_calendar()
TUESDAY_8PM = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)  # 20:00 in Paris, two hours before off-peak


def register(ledger: Ledger, run_id: str = "r1", tenant: str = "acme", gpu: str = "l4") -> None:
    ledger.register_run(run_id, tenant=tenant, job="cats", priority="standard", gpu_type=gpu,
                        submitted_at=TUESDAY_8PM, features={"rank": 8})


def test_retries_are_billed_once_each_and_summed(ledger: Ledger) -> None:
    register(ledger)
    register(ledger)  # a retried validate_request
    ledger.attempt_started("r1", 1, TUESDAY_8PM)
    first_end = TUESDAY_8PM + timedelta(hours=1)
    for _ in range(2):  # a callback that runs twice bills once
        ledger.attempt_finished("r1", 1, started_at=TUESDAY_8PM, finished_at=first_end, succeeded=False,
                                peak_bytes=None, calendar=CALENDAR)
    second_start = TUESDAY_8PM + timedelta(hours=2)  # 22:00 Paris: off-peak from here
    ledger.attempt_started("r1", 2, second_start)
    ledger.attempt_finished("r1", 2, started_at=second_start, finished_at=second_start + timedelta(hours=1),
                            succeeded=True, peak_bytes=20 * 2**30, calendar=CALENDAR)
    [run] = ledger.runs()
    price = CALENDAR.price("l4")
    assert run.status == "success" and run.gpu_seconds == 7200 and run.off_peak_seconds == 3600
    assert run.cost == pytest.approx(price.peak + price.off_peak)
    assert run.actual_seconds == 3600 and run.actual_peak_bytes == 20 * 2**30  # above 2**31: a BIGINT


def test_a_cancel_stays_cancelled_whatever_training_reports_after_it(ledger: Ledger) -> None:
    """A tenant cancels as Airflow marks train running, before its callbacks: the try that starts and is
    killed afterwards is billed, but the run stays what the tenant asked for."""
    register(ledger)
    ledger.close_run("r1", "cancelled", TUESDAY_8PM)
    ledger.attempt_started("r1", 1, TUESDAY_8PM)
    ledger.attempt_finished("r1", 1, started_at=TUESDAY_8PM, finished_at=TUESDAY_8PM + timedelta(minutes=6),
                            succeeded=False, peak_bytes=None, calendar=CALENDAR)
    ledger.close_run("r1", "failed", TUESDAY_8PM + timedelta(minutes=7))  # the outcome task
    [run] = ledger.runs()
    assert run.status == "cancelled" and run.gpu_seconds == 360


def test_bill_for_a_month(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    for run_id, tenant in (("r1", "acme"), ("r2", "acme"), ("r3", "other")):
        register(ledger, run_id, tenant)
        ledger.attempt_finished(run_id, 1, started_at=TUESDAY_8PM, finished_at=TUESDAY_8PM + timedelta(hours=3),
                                succeeded=True, peak_bytes=1, calendar=CALENDAR)
    lines = ledger.bill("acme", "2026-11")
    assert [line.run_id for line in lines] == ["r1", "r2"]
    assert lines[0].gpu_hours == pytest.approx(3) and 0 < lines[0].off_peak_share < 1
    assert ledger.bill("acme", "2026-12") == []
    with pytest.raises(LoraTaskError, match="not YYYY-MM"):
        ledger.bill("acme", "November")
    assert main(["--url", ledger.url, "usage", "--tenant", "acme", "--month", "2026-11"]) == 0
    out = capsys.readouterr().out
    assert "r1" in out and "r3" not in out and out.strip().splitlines()[-1].startswith("total")


def test_unknown_runs_are_refused(ledger: Ledger) -> None:
    with pytest.raises(LoraTaskError, match="not in the ledger"):
        ledger.attempt_started("ghost", 1, TUESDAY_8PM)


def test_instants_keep_their_moment_whatever_their_zone(ledger: Ledger) -> None:
    paris_evening = datetime.fromisoformat("2026-11-24T18:00:00+01:00")
    ledger.register_run("r1", tenant="acme", job="cats", priority="batch", gpu_type="l4", submitted_at=TUESDAY_8PM,
                        deadline=paris_evening)
    [run] = ledger.runs()
    assert run.deadline == paris_evening and run.deadline.utcoffset() == timedelta(0)  # 17:00 UTC, aware
    with pytest.raises(Exception, match="no time zone"):
        ledger.register_run("r2", tenant="acme", job="cats", priority="batch", gpu_type="l4",
                            submitted_at=datetime(2026, 11, 24, 18, 0))


def test_a_prediction_in_numpy_floats_is_stored_on_every_backend(ledger: Ledger) -> None:
    """The duration fit answers numpy floats; psycopg2 cannot send those to PostgreSQL."""
    import numpy as np

    ledger.register_run("np-run", tenant="acme", job="j", priority="standard", gpu_type="l4",
                        submitted_at=datetime(2026, 11, 24, tzinfo=UTC))
    ledger.record_prediction("np-run", seconds=np.float64(18.5), low=np.float64(15.5), high=np.float64(23.0),
                             peak_bytes=None, features={"steps": 24})
    run = ledger.find_run("np-run")
    assert (run.predicted_seconds, run.predicted_low, run.predicted_high) == (18.5, 15.5, 23.0)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_that_open_a_new_ledger_together_all_get_its_schema(backend: str, tmp_path) -> None:
    """The api-server, the scheduler and a command opening one new ledger at once each run its migrations;
    without a lock two create the same tables and one dies on a duplicate key."""
    for url in [f"sqlite:///{tmp_path / 'ledger.db'}"] if backend == "sqlite" else postgres():
        with multiprocessing.get_context("spawn").Pool(6) as pool:
            pool.map(migrate, [url] * 6)
        assert Ledger(url).runs() == []
