"""One real Airflow on loopback for every end-to-end test (api-server, scheduler, dag-processor,
triggerer; LocalExecutor), with Airflow's metadata and the platform's ledger on the machine's PostgreSQL
when it answers, SQLite otherwise."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lora_airflow.local_stack import DEMO_JOB, AirflowConfig, LocalStack, build_demo_inputs, free_port, prepare


class Postgres:
    """Fresh databases on the local PostgreSQL, dropped at the end; none when it does not answer."""

    def __init__(self) -> None:
        self.admin: Any = None
        self.names: list[str] = []
        try:
            with socket.create_connection(("127.0.0.1", 5432), timeout=1):
                pass
            import psycopg2
        except (OSError, ImportError):
            return
        self.admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
        self.admin.autocommit = True

    def database(self, driver: str = "psycopg2") -> str | None:
        if self.admin is None:
            return None
        name = f"lora_e2e_{uuid.uuid4().hex[:8]}"
        self.admin.cursor().execute(f"CREATE DATABASE {name}")
        self.names.append(name)
        return f"postgresql+{driver}://postgres@127.0.0.1:5432/{name}"

    def drop(self) -> None:
        if self.admin is None:
            return
        for name in self.names:
            self.admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.admin.close()


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory, clamav_database: Path) -> Iterator[AirflowConfig]:
    root = tmp_path_factory.mktemp("e2e")
    postgres = Postgres()
    url = postgres.database()
    config = AirflowConfig(home=root / "airflow", port=free_port(), db_url=url)
    calendar = root / "always-off-peak.yaml"  # batch runs must not wait for tonight in a test
    calendar.write_text("timezone: UTC\noff_peak_windows: [{start: '00:00', end: '24:00'}]\n"
                        "prices: {cpu: {peak: 0.0, off_peak: 0.0}}\n")
    build_demo_inputs()  # what the trigger form proposes, as make up builds it
    env = prepare(config)
    env.update({"LORA_FORM_DEFAULTS": str(DEMO_JOB), "LORA_WORKSPACE": str(root / "workspace"),
                "LORA_ARTIFACT_ROOT": str(root / "artifacts"),
                "LORA_CLAMAV_DATABASE": str(clamav_database), "LORA_SCHEDULING_FILE": str(calendar),
                "LORA_LEDGER_URL": postgres.database() or f"sqlite:///{root / 'ledger.db'}",
                "HF_HUB_OFFLINE": "1"})
    stack = LocalStack(config)
    stack.start(env)
    try:
        stack.wait_healthy()
        config.extra.update(artifacts=str(root / "artifacts"), workspace=str(root / "workspace"),
                            ledger=env["LORA_LEDGER_URL"], database="postgresql" if url else "sqlite")
        yield config
    finally:
        stack.stop()
        postgres.drop()
