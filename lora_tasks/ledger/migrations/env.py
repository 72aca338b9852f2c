"""Alembic environment: the ledger's URL comes from the caller (lora_tasks.ledger.store.migrate)."""

from alembic import context
from sqlalchemy import create_engine

from lora_tasks.ledger.models import Base

engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
