"""The ledger under test on both backends: a SQLite file and the machine's PostgreSQL."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lora_tasks.ledger import Ledger
from lora_tasks.ledger.store import migrate


def postgres() -> Iterator[str]:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        import psycopg2
    except (OSError, ImportError):
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    name = f"lora_ledger_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        migrate(url)
        yield Ledger(url)
    else:
        for url in postgres():
            migrate(url)
            yield Ledger(url)
