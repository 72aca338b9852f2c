"""Random adapters for the tiny base model, published the way the platform publishes them (store files,
manifest last, registry row), and a serving stack over them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lora_tasks.ledger.store import Ledger, open_ledger
from lora_tasks.serve.settings import ServeSettings
from lora_tasks.settings import PlatformSettings
from lora_tasks.stores import open_store
from lora_tasks.stores.versions import publish_version, version_prefix
from lora_tasks.tiny import lora as tiny_lora
from lora_tasks.train.outputs import DIFFUSERS_FILE

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
SIZE = {"width": 64, "height": 64, "steps": 2}
"""Requests small enough for the tiny model to answer in tens of milliseconds."""
_runs = itertools.count()


@pytest.fixture(scope="session")
def lora_shapes(tiny_model: Path) -> dict[str, tuple[int, int]]:
    return tiny_lora.lora_shapes(tiny_model)


@dataclass
class Registry:
    """A ledger and an artifact store of the test's own."""

    ledger: Ledger
    platform: PlatformSettings
    shapes: dict[str, tuple[int, int]]
    scratch: Path

    def publish(self, tenant: str, name: str, seed: int, public: bool = False) -> int:
        """Write a random adapter as the trainer exports it and publish it as the publish stage does."""
        run_id = f"run-{next(_runs)}"
        weights = tiny_lora.save_random_lora(self.scratch / run_id, self.shapes, seed)
        store = open_store(self.platform.artifact_root)
        version = self.ledger.reserve_adapter_version(tenant, name, run_id, base_model="tiny",
                                                      formats=["diffusers"], created_at=NOW)
        publish_version(store, tenant, name, f"v{version}", files={DIFFUSERS_FILE: weights},
                        metadata={})
        self.ledger.mark_adapter_published(tenant, name, version,
                                           uri=store.uri_of(version_prefix(tenant, name, f"v{version}")),
                                           figures={}, public=public, published_at=NOW)
        return version

    def weights_file(self, tenant: str, name: str, version: int) -> Path:
        return Path(self.platform.artifact_root) / version_prefix(tenant, name, f"v{version}") / DIFFUSERS_FILE


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, lora_shapes: dict[str, tuple[int, int]]) -> Registry:
    root = tmp_path_factory.mktemp("serve")
    platform = PlatformSettings(artifact_root=str(root / "artifacts"), ledger_url=f"sqlite:///{root / 'ledger.db'}")
    return Registry(open_ledger(platform.ledger_url), platform, lora_shapes, root / "exports")


@pytest.fixture(scope="module")
def serve_settings(tiny_model: Path) -> ServeSettings:
    return ServeSettings(base_model=tiny_model, pipeline_slots=2)
