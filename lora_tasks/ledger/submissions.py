"""The tenant API's idempotency keys: one run per (tenant, key), however often the request is retried,
and whichever of two concurrent requests gets there first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from lora_tasks.ledger.models import Run, Submission

PENDING_WINDOW = timedelta(minutes=10)
"""How long a taken job counts against the quota before its run shows in the ledger (validate_request
registers it within seconds unless it refuses the job)."""


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

    def complete_submission(self, tenant: str, key: str, run_id: str) -> None:
        with self.sessions.begin() as session:
            session.get_one(Submission, (tenant, key)).run_id = run_id

    def release_submission(self, tenant: str, key: str) -> None:
        """Forget a claim whose trigger failed, so a retry may try again."""
        with self.sessions.begin() as session:
            session.execute(delete(Submission).where(Submission.tenant == tenant, Submission.key == key,
                                                     Submission.run_id == ""))

    def pending_submissions(self, tenant: str, besides: str) -> int:
        """The tenant's jobs taken but not yet in the runs table (their run's first task has not run), the
        one claimed with key ``besides`` left out."""
        since = datetime.now(UTC) - PENDING_WINDOW  # older: its run was refused before it was registered
        with self.sessions.begin() as session:
            known = select(Run.run_id)
            return session.scalar(select(func.count()).select_from(Submission).where(
                Submission.tenant == tenant, Submission.key != besides, Submission.run_id.not_in(known),
                Submission.created_at > since)) or 0

    def submitted_runs(self, tenant: str) -> set[str]:
        """Run ids of every job the tenant API took for ``tenant``."""
        with self.sessions.begin() as session:
            return set(session.scalars(select(Submission.run_id).where(Submission.tenant == tenant,
                                                                       Submission.run_id != "")))
