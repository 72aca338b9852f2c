"""The ledger: runs, attempts, stage timings, predictions against actuals, GPU time and cost per tenant,
the capacity planner's decisions, the adapter registry and the API keys that act for tenants (SQLAlchemy 2,
Alembic). May import: core."""

from lora_tasks.ledger.store import Ledger

__all__ = ["Ledger"]
