"""The ledger's tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Instants stored as UTC and read back timezone-aware, on every backend. SQLite keeps no
    zone: without this, 18:00+01:00 would be stored as 18:00 and read back an hour late."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"the ledger stores instants, not wall times: {value!r} has no time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class Run(Base):
    """One lora_finetune run: what was asked, predicted, used and billed."""

    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(250), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    job: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16))
    gpu_type: Mapped[str] = mapped_column(String(32), index=True)
    features: Mapped[dict[str, Any]] = mapped_column(default=dict)
    submitted_at: Mapped[datetime]
    deadline: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="submitted", index=True)
    predicted_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    predicted_low: Mapped[float | None] = mapped_column(Float, default=None)
    predicted_high: Mapped[float | None] = mapped_column(Float, default=None)
    actual_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    predicted_peak_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    actual_peak_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    off_peak_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    admission: Mapped[str | None] = mapped_column(String(16), default=None)
    """accept, accept-later (predicted after its deadline, taken anyway) or refuse; None before validate_request."""
    predicted_start: Mapped[datetime | None] = mapped_column(default=None)
    predicted_finish: Mapped[datetime | None] = mapped_column(default=None)
    """What the run was promised at admission, from the queue and the bounded fleet."""


class TrainAttempt(Base):
    """One try of the train task: the unit of GPU time billed (retries are billed too)."""

    __tablename__ = "train_attempts"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True)
    try_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="running")
    peak_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    off_peak_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)


class StageTiming(Base):
    __tablename__ = "stage_timings"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(32), primary_key=True)
    seconds: Mapped[float] = mapped_column(Float)


class CapacityDecision(Base):
    """What the capacity planner decided, and from what."""

    __tablename__ = "capacity_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decided_at: Mapped[datetime] = mapped_column(index=True)
    gpu_type: Mapped[str] = mapped_column(String(32))
    current: Mapped[int] = mapped_column(Integer)
    desired: Mapped[int] = mapped_column(Integer)
    applied: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(500))
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Adapter(Base):
    """One version of a tenant's adapter: reserved when its publish starts, readable once published.
    Keyed by run, so a retried publish finds its version; (tenant, name, version) is unique, so two
    concurrent publishes of one name get two versions."""

    __tablename__ = "adapters"
    __table_args__ = (UniqueConstraint("tenant", "name", "version", name="uq_adapters_version"),)

    run_id: Mapped[str] = mapped_column(String(250), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="publishing")
    """'publishing' until its manifest is written, then 'published'."""
    uri: Mapped[str | None] = mapped_column(String(1000), default=None)
    formats: Mapped[list[str]] = mapped_column(default=list)
    base_model: Mapped[str] = mapped_column(String(1000))
    figures: Mapped[dict[str, Any]] = mapped_column(default=dict)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    published_at: Mapped[datetime | None] = mapped_column(default=None)


class ApiKey(Base):
    """A key that acts for one tenant. Only its sha256 is stored: keys are long random tokens, so a
    fast hash is as safe as a slow one, and a lookup is one indexed read."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Submission(Base):
    """A job the tenant API took, by the caller's ``Idempotency-Key``: a retried request finds its run
    instead of starting a second one. ``run_id`` is empty while the trigger is in flight; ``ended`` marks a run
    Airflow ended before it reached the runs table (validate_request refused it)."""

    __tablename__ = "submissions"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(250), default="")
    created_at: Mapped[datetime]
    ended: Mapped[bool] = mapped_column(default=False, server_default=false())
