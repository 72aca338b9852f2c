"""The ledger: runs, attempts, stage timings, predictions against actuals, GPU time and cost per tenant,
and the capacity planner's decisions (SQLAlchemy 2, Alembic). May import: core."""

from lora_tasks.ledger.store import Ledger

__all__ = ["Ledger"]
