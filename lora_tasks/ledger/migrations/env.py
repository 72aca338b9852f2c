"""Alembic environment: the ledger's URL comes from the caller (lora_tasks.ledger.store.migrate).

On PostgreSQL the upgrade holds an advisory lock for its transaction: the api-server, the scheduler and a
command-line call may all open a new ledger at once, and two creating its tables together would collide."""

from alembic import context
from sqlalchemy import create_engine, text

from lora_tasks.ledger.models import Base

MIGRATION_LOCK = 0x4C6F5241  # any constant shared by every process that migrates this ledger

engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()
