"""The ledger's first schema: runs, train attempts, stage timings, capacity decisions.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False, index=True),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("gpu_type", sa.String(32), nullable=False, index=True),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("submitted_at", TS, nullable=False),
        sa.Column("deadline", TS),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("predicted_seconds", sa.Float()),
        sa.Column("predicted_low", sa.Float()),
        sa.Column("predicted_high", sa.Float()),
        sa.Column("actual_seconds", sa.Float()),
        sa.Column("predicted_peak_bytes", sa.BigInteger()),
        sa.Column("actual_peak_bytes", sa.BigInteger()),
        sa.Column("gpu_seconds", sa.Float(), nullable=False),
        sa.Column("off_peak_seconds", sa.Float(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
    )
    op.create_table(
        "train_attempts",
        sa.Column("run_id", sa.String(250), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("try_number", sa.Integer(), primary_key=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("peak_bytes", sa.BigInteger()),
        sa.Column("gpu_seconds", sa.Float(), nullable=False),
        sa.Column("off_peak_seconds", sa.Float(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
    )
    op.create_table(
        "stage_timings",
        sa.Column("run_id", sa.String(250), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("stage", sa.String(32), primary_key=True),
        sa.Column("seconds", sa.Float(), nullable=False),
    )
    op.create_table(
        "capacity_decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("decided_at", TS, nullable=False, index=True),
        sa.Column("gpu_type", sa.String(32), nullable=False),
        sa.Column("current", sa.Integer(), nullable=False),
        sa.Column("desired", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    for table in ("capacity_decisions", "stage_timings", "train_attempts", "runs"):
        op.drop_table(table)
