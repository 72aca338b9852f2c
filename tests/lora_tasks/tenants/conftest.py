"""The ledger fixture of the ledger's tests (SQLite and the machine's PostgreSQL), for the tenant API."""

from tests.lora_tasks.ledger.conftest import ledger  # noqa: F401 - a fixture, used by name
