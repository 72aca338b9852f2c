"""What a tenant is told of a job's finish: the admission's promise while queued, the start's once running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lora_tasks.ledger.models import Run
from lora_tasks.tenants.api import job_view
from lora_tasks.tenants.progress import predicted_finish

SUBMITTED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_a_queued_job_shows_the_finish_admission_predicted_and_a_running_one_its_own() -> None:
    promised = SUBMITTED + timedelta(hours=5)
    run = Run(run_id="r", tenant="demo", job="j", priority="batch", gpu_type="l4", submitted_at=SUBMITTED,
              predicted_seconds=3600.0, admission="accept-later", predicted_start=promised - timedelta(hours=1),
              predicted_finish=promised, status="submitted")
    assert predicted_finish(run) == promised  # behind the queue, not submission + an hour
    view = job_view(run, {}, None)
    assert view["admission"] == "accept-later" and view["predicted_finish"] == promised.isoformat()
    run.started_at = SUBMITTED + timedelta(hours=2)
    assert predicted_finish(run) == SUBMITTED + timedelta(hours=3)  # under way: its start plus its hour
