"""The ledger: runs, their attempts and stage timings, predictions against actuals, GPU time
and cost per tenant, and the capacity planner's decisions. SQLAlchemy 2 over SQLite by
default or PostgreSQL by URL (LORA_LEDGER_URL); the schema is managed with Alembic."""

from lora_tasks.ledger.store import Ledger

__all__ = ["Ledger"]
