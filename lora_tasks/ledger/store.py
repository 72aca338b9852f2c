"""Reading and writing the ledger. Every write is idempotent: rows are keyed by run id (and
try number, and stage), so a retried task writes nothing twice."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from lora_tasks.errors import LoraTaskError
from lora_tasks.ledger.adapters import AdapterRegistry
from lora_tasks.ledger.keys import ApiKeys
from lora_tasks.ledger.models import CapacityDecision, Run, StageTiming, TrainAttempt
from lora_tasks.ledger.submissions import Submissions

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class Tariff(Protocol):
    """What billing needs to know of prices: ``scheduling.windows.OffPeakCalendar`` is one."""

    def off_peak_seconds(self, start: datetime, end: datetime) -> float: ...

    def cost(self, gpu_type: str, start: datetime, end: datetime) -> float: ...


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (Alembic). Processes opening one new ledger at once take turns:
    a SQLite file through a lock file beside it, PostgreSQL through an advisory lock (migrations/env.py)."""
    from alembic import command
    from alembic.config import Config
    from filelock import FileLock
    from sqlalchemy.engine import make_url

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        with FileLock(f"{parsed.database}.migrating"):
            command.upgrade(config, "head")
    else:
        command.upgrade(config, "head")


@lru_cache(maxsize=8)
def open_ledger(url: str) -> Ledger:
    """The ledger at ``url``, its schema brought up to date once per process."""
    migrate(url)
    return Ledger(url)


@dataclass(frozen=True)
class BillLine:
    run_id: str
    job: str
    gpu_type: str
    status: str
    gpu_hours: float
    off_peak_share: float
    cost: float


@dataclass(frozen=True)
class TenantUsage:
    runs: int
    gpu_hours: float
    cost: float


class Ledger(AdapterRegistry, ApiKeys, Submissions):
    """Runs and billing here; the adapter registry, API keys and the tenant API's submissions in their mixins."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine = create_engine(url, future=True)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions.begin() as session:
            yield session

    # ------------------------------------------------------------------------ runs

    def register_run(self, run_id: str, *, tenant: str, job: str, priority: str, gpu_type: str,
                     submitted_at: datetime, features: dict[str, Any] | None = None,
                     deadline: datetime | None = None, predicted_peak_bytes: int | None = None) -> None:
        """Create the run's row (a retried validate_request finds it and changes nothing)."""
        with self.session() as session:
            if session.get(Run, run_id) is None:
                session.add(Run(run_id=run_id, tenant=tenant, job=job, priority=priority, gpu_type=gpu_type,
                                submitted_at=submitted_at, features=features or {}, deadline=deadline,
                                predicted_peak_bytes=predicted_peak_bytes))

    def record_prediction(self, run_id: str, *, seconds: float, low: float, high: float, peak_bytes: int | None,
                          features: dict[str, Any]) -> None:
        with self.session() as session:
            run = self._run(session, run_id)
            # float(): a numpy float (the duration fit's) is no value psycopg2 can send PostgreSQL
            run.predicted_seconds, run.predicted_low, run.predicted_high = float(seconds), float(low), float(high)
            if peak_bytes is not None:
                run.predicted_peak_bytes = peak_bytes
            run.features = {**run.features, **features}

    def record_admission(self, run_id: str, outcome: str, start: datetime, finish: datetime) -> None:
        """The decision and what it was promised; a run refused before and accepted on a retry is queued again."""
        with self.session() as session:
            run = self._run(session, run_id)
            run.admission, run.predicted_start, run.predicted_finish = outcome, start, finish
            if outcome != "refuse" and run.status == "refused":
                run.status, run.finished_at = "submitted", None

    def record_stage(self, run_id: str, stage: str, seconds: float) -> None:
        with self.session() as session:
            self._run(session, run_id)
            timing = session.get(StageTiming, (run_id, stage))
            if timing is None:
                session.add(StageTiming(run_id=run_id, stage=stage, seconds=seconds))
            else:
                timing.seconds = seconds

    def attempt_started(self, run_id: str, try_number: int, started_at: datetime) -> None:
        with self.session() as session:
            run = self._run(session, run_id)
            if session.get(TrainAttempt, (run_id, try_number)) is None:
                session.add(TrainAttempt(run_id=run_id, try_number=try_number, started_at=started_at))
            if run.status != "cancelled":  # a cancel can land between Airflow's "running" and this callback
                run.status = "running"
            run.started_at = min(run.started_at or started_at, started_at)

    def attempt_finished(self, run_id: str, try_number: int, *, started_at: datetime, finished_at: datetime,
                         succeeded: bool, peak_bytes: int | None, calendar: Tariff) -> None:
        """Bill one try of the train task, once; the run's totals are the sum of its tries."""
        with self.session() as session:
            run = self._run(session, run_id)
            attempt = session.get(TrainAttempt, (run_id, try_number))
            if attempt is None:
                attempt = TrainAttempt(run_id=run_id, try_number=try_number, started_at=started_at)
                session.add(attempt)
            elif attempt.finished_at is not None:
                return  # already billed: a callback that ran twice
            attempt.finished_at, attempt.status, attempt.peak_bytes = finished_at, \
                "success" if succeeded else "failed", peak_bytes
            attempt.started_at = start = started_at  # the biller knows when the GPU was taken
            attempt.gpu_seconds = (finished_at - start).total_seconds()
            attempt.off_peak_seconds = calendar.off_peak_seconds(start, finished_at)
            attempt.cost = calendar.cost(run.gpu_type, start, finished_at)
            session.flush()
            attempts = session.scalars(select(TrainAttempt).where(TrainAttempt.run_id == run_id)).all()
            run.gpu_seconds = sum(a.gpu_seconds for a in attempts)
            run.off_peak_seconds = sum(a.off_peak_seconds for a in attempts)
            run.cost = sum(a.cost for a in attempts)
            if run.status != "cancelled":  # a tenant's cancel stays what the run's bill says
                run.finished_at, run.status = finished_at, "success" if succeeded else "failed"
            if succeeded:
                run.actual_seconds = attempt.gpu_seconds
                run.actual_peak_bytes = peak_bytes

    def close_run(self, run_id: str, status: str, finished_at: datetime) -> None:
        """Mark a run that ended badly outside training (refused data, a failed quality gate) so it
        leaves the queue and its bill says so; a run whose training succeeded keeps its figures."""
        with self.session() as session:
            run = session.get(Run, run_id, with_for_update=True)
            if run is not None and run.status != "cancelled":
                run.status, run.finished_at = status, run.finished_at or finished_at

    @staticmethod
    def _run(session: Session, run_id: str) -> Run:
        """The run, its row locked until the session ends: on PostgreSQL a cancel and the train task's
        billing callback may write it at once, and neither may undo the other (SQLite serialises anyway)."""
        run = session.get(Run, run_id, with_for_update=True)
        if run is None:
            raise LoraTaskError(f"run {run_id!r} is not in the ledger (validate_request registers every run)")
        return run

    # ---------------------------------------------------------------------- reading

    def runs(self, *, statuses: tuple[str, ...] | None = None, gpu_type: str | None = None,
             submitted_after: datetime | None = None, tenant: str | None = None) -> list[Run]:
        query = select(Run).order_by(Run.submitted_at)
        if tenant is not None:
            query = query.where(Run.tenant == tenant)
        if submitted_after is not None:
            query = query.where(Run.submitted_at > submitted_after)
        if statuses:
            query = query.where(Run.status.in_(statuses))
        if gpu_type:
            query = query.where(Run.gpu_type == gpu_type)
        with self.session() as session:
            return list(session.scalars(query))

    def find_run(self, run_id: str) -> Run | None:
        """Any tenant's run (for operators; a tenant's own lookup is ``tenant_run``)."""
        with self.session() as session:
            return session.get(Run, run_id)

    def tenant_run(self, tenant: str, run_id: str) -> Run | None:
        """The run ``run_id`` if it is ``tenant``'s, else None (another tenant's reads as absent)."""
        with self.session() as session:
            run = session.get(Run, run_id)
            return run if run is not None and run.tenant == tenant else None

    def stage_seconds(self, run_id: str) -> dict[str, float]:
        """Each finished stage's own seconds, as the stage measured them."""
        with self.session() as session:
            rows = session.scalars(select(StageTiming).where(StageTiming.run_id == run_id))
            return {row.stage: row.seconds for row in rows}

    def bill(self, tenant: str, month: str) -> list[BillLine]:
        """Every run of ``tenant`` finished in ``month`` (YYYY-MM), with GPU hours and cost."""
        start, end = _month(month)
        with self.session() as session:
            runs = session.scalars(select(Run).where(Run.tenant == tenant, Run.finished_at >= start,
                                                     Run.finished_at < end).order_by(Run.finished_at)).all()
        return [BillLine(r.run_id, r.job, r.gpu_type, r.status, r.gpu_seconds / 3600,
                         r.off_peak_seconds / r.gpu_seconds if r.gpu_seconds else 0.0, r.cost) for r in runs]

    def month_usage(self, month: str) -> dict[str, TenantUsage]:
        """Each tenant's runs, GPU hours and cost in ``month``, counted as its bill counts them."""
        start, end = _month(month)
        query = select(Run.tenant, func.count(), func.sum(Run.gpu_seconds), func.sum(Run.cost)) \
            .where(Run.finished_at >= start, Run.finished_at < end).group_by(Run.tenant).order_by(Run.tenant)
        with self.session() as session:
            return {tenant: TenantUsage(runs, (seconds or 0.0) / 3600, cost or 0.0)
                    for tenant, runs, seconds, cost in session.execute(query)}

    def record_decision(self, decision: CapacityDecision) -> None:
        with self.session() as session:
            session.add(decision)

    def last_decision(self, gpu_type: str) -> CapacityDecision | None:
        query = select(CapacityDecision).where(CapacityDecision.gpu_type == gpu_type) \
            .order_by(CapacityDecision.decided_at.desc(), CapacityDecision.id.desc()).limit(1)
        with self.session() as session:
            return session.scalars(query).first()

    def decisions(self, gpu_type: str | None = None, since: datetime | None = None) -> list[CapacityDecision]:
        query = select(CapacityDecision).order_by(CapacityDecision.decided_at, CapacityDecision.id)
        if gpu_type:
            query = query.where(CapacityDecision.gpu_type == gpu_type)
        if since is not None:
            query = query.where(CapacityDecision.decided_at >= since)
        with self.session() as session:
            return list(session.scalars(query))


def _month(month: str) -> tuple[datetime, datetime]:
    """The first instant of ``month`` (YYYY-MM, UTC) and of the month after."""
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise LoraTaskError(f"--month {month!r} is not YYYY-MM") from None
    return start, start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
