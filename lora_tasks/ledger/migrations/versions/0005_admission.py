"""A run's admission: the outcome (accept, accept-later, refuse) and the predicted start and finish it was
decided on, recorded by validate_request.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("runs", sa.Column("admission", sa.String(16), nullable=True))
    op.add_column("runs", sa.Column("predicted_start", TS, nullable=True))
    op.add_column("runs", sa.Column("predicted_finish", TS, nullable=True))


def downgrade() -> None:
    for column in ("predicted_finish", "predicted_start", "admission"):
        op.drop_column("runs", column)
