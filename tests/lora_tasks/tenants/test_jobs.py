"""What the gateway decides from Airflow's answers, on SQLite and PostgreSQL: a taken job counts against the
quota until its run is registered or Airflow ended it, however long it waits; a cancel stops unfinished
stages, and a job with none left to stop is not reported cancelled. Airflow itself answers in the e2e
tests; here a recorder stands in for its answers, so each case is set exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from lora_tasks.ledger import Ledger
from lora_tasks.ledger.models import Submission
from lora_tasks.pipeline.tenancy import Quotas
from lora_tasks.tenants.jobs import Refused, cancel_job, check_quotas


@dataclass
class AirflowAnswers:
    """Airflow's answers by run id: the run's state and the stages a cancel would find unfinished."""

    states: dict[str, str]
    unfinished: dict[str, list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def run_state(self, run_id: str) -> str:
        self.asked.append(run_id)
        return self.states[run_id]

    def cancel(self, run_id: str) -> list[str]:
        self.cancelled.append(run_id)
        return self.unfinished.get(run_id, [])


def taken(ledger: Ledger, key: str, run_id: str, ago: timedelta) -> None:
    """A job the API took ``ago``, whose run validate_request has not registered."""
    assert ledger.claim_submission("acme", key) is None
    ledger.complete_submission("acme", key, run_id)
    with ledger.sessions.begin() as session:
        session.execute(update(Submission).where(Submission.key == key).values(created_at=datetime.now(UTC) - ago))


def test_a_job_airflow_keeps_queued_counts_however_long_it_waits(ledger: Ledger) -> None:
    taken(ledger, "k1", "queued-for-hours", timedelta(hours=3))
    taken(ledger, "k2", "just-taken", timedelta(seconds=5))
    airflow = AirflowAnswers({"queued-for-hours": "queued"})
    with pytest.raises(Refused) as refused:
        check_quotas(ledger, "acme", "new", Quotas(concurrent_jobs=2), airflow)
    assert refused.value.status == 429 and "2 of yours are queued or running" in refused.value.message
    assert airflow.asked == ["queued-for-hours"]  # the one taken seconds ago is not looked up yet


def test_a_job_airflow_ended_before_registering_it_stops_counting_for_good(ledger: Ledger) -> None:
    taken(ledger, "k1", "refused-by-validate", timedelta(minutes=5))
    airflow = AirflowAnswers({"refused-by-validate": "failed"})
    check_quotas(ledger, "acme", "new", Quotas(concurrent_jobs=1), airflow)
    check_quotas(ledger, "acme", "new", Quotas(concurrent_jobs=1), airflow)
    assert airflow.asked == ["refused-by-validate"]  # remembered: not asked again


def running_job(ledger: Ledger, run_id: str) -> None:
    ledger.register_run(run_id, tenant="acme", job="cats", priority="standard", gpu_type="l4",
                        submitted_at=datetime.now(UTC))


def test_a_cancel_stops_the_unfinished_stages_and_the_run_is_cancelled(ledger: Ledger) -> None:
    running_job(ledger, "training")
    airflow = AirflowAnswers({"training": "running"}, unfinished={"training": ["train", "evaluate", "publish"]})
    assert cancel_job("training", "acme", ledger, airflow) == {"job_id": "training", "status": "cancelled"}
    assert ledger.tenant_run("acme", "training").status == "cancelled"


def test_a_job_whose_work_is_done_is_not_reported_cancelled(ledger: Ledger) -> None:
    running_job(ledger, "closing")  # published; only outcome and cleanup still run
    airflow = AirflowAnswers({"closing": "running"})
    with pytest.raises(Refused) as refused:
        cancel_job("closing", "acme", ledger, airflow)
    assert refused.value.status == 409 and "no stage left to stop" in refused.value.message
    assert ledger.tenant_run("acme", "closing").status != "cancelled"


@pytest.mark.parametrize("state", ["success", "failed"])
def test_an_ended_job_is_left_as_it_is(ledger: Ledger, state: str) -> None:
    running_job(ledger, "ended")
    airflow = AirflowAnswers({"ended": state})
    with pytest.raises(Refused) as refused:
        cancel_job("ended", "acme", ledger, airflow)
    assert refused.value.status == 409 and airflow.cancelled == []


def test_another_tenants_job_is_not_even_looked_up(ledger: Ledger) -> None:
    ledger.register_run("theirs", tenant="globex", job="dogs", priority="standard", gpu_type="l4",
                        submitted_at=datetime.now(UTC))
    airflow = AirflowAnswers({})
    with pytest.raises(Refused) as refused:
        cancel_job("theirs", "acme", ledger, airflow)
    assert refused.value.status == 404 and airflow.asked == [] and airflow.cancelled == []
