"""The tenant API's idempotency keys: one run per (tenant, key), however often the request is retried,
and whichever of two concurrent requests gets there first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from lora_tasks.ledger.models import Run, Submission


@dataclass(frozen=True)
class Unregistered:
    """A job taken but not in the runs table: its run's first task has not run yet, or refused it (``ended``).
    ``run_id`` is empty while its trigger is in flight."""

    key: str
    run_id: str
    created_at: datetime
    ended: bool


class Submissions:
    """The ledger's submission methods (mixed into ``Ledger``)."""

    sessions: sessionmaker[Session]

    def claim_submission(self, tenant: str, key: str) -> str | None:
        """None when this call claimed the key (go on and trigger); else the run the key already names
        ('' while another request is triggering it)."""
        try:
            with self.sessions.begin() as session:
                session.add(Submission(tenant=tenant, key=key, run_id="", created_at=datetime.now(UTC)))
            return None
        except IntegrityError:
            with self.sessions.begin() as session:
                return session.scalars(select(Submission.run_id).where(Submission.tenant == tenant,
                                                                       Submission.key == key)).one()

    def submission_run(self, tenant: str, key: str) -> str | None:
        """The run the key names ('' while its trigger is in flight), or None when no request has claimed it."""
        with self.sessions.begin() as session:
            return session.scalar(select(Submission.run_id).where(Submission.tenant == tenant, Submission.key == key))

    def complete_submission(self, tenant: str, key: str, run_id: str) -> None:
        with self.sessions.begin() as session:
            session.get_one(Submission, (tenant, key)).run_id = run_id

    def release_submission(self, tenant: str, key: str) -> None:
        """Forget a claim whose trigger failed, so a retry may try again."""
        with self.sessions.begin() as session:
            session.execute(delete(Submission).where(Submission.tenant == tenant, Submission.key == key,
                                                     Submission.run_id == ""))

    def unregistered_submissions(self, tenant: str) -> list[Unregistered]:
        """The tenant's jobs taken but not in the runs table, oldest first."""
        with self.sessions.begin() as session:
            rows = session.execute(select(Submission.key, Submission.run_id, Submission.created_at, Submission.ended)
                                   .where(Submission.tenant == tenant, Submission.run_id.not_in(select(Run.run_id)))
                                   .order_by(Submission.created_at))
            return [Unregistered(*row) for row in rows]

    def end_submission(self, tenant: str, key: str) -> None:
        """Airflow ended this job's run before it was registered: it no longer counts."""
        with self.sessions.begin() as session:
            session.get_one(Submission, (tenant, key)).ended = True

    def submitted_runs(self, tenant: str) -> set[str]:
        """Run ids of every job the tenant API took for ``tenant``."""
        with self.sessions.begin() as session:
            return set(session.scalars(select(Submission.run_id).where(Submission.tenant == tenant,
                                                                       Submission.run_id != "")))

