"""One request's path: resolve the caller's reference in the registry, find the adapter in the pipeline
tier, else in RAM, else in the store, then generate under the pipeline's lock.

The store is read outside the lock (other adapters keep generating meanwhile); only loading into the
model and generating hold it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lora_tasks.ledger.adapters import AdapterVersion
from lora_tasks.ledger.store import Ledger, open_ledger
from lora_tasks.serve.cache import PipelineTier, RamTier
from lora_tasks.serve.engine import Engine, GenerationParams, png_bytes
from lora_tasks.serve.loader import AdapterWeights, adapter_key, load_adapter
from lora_tasks.serve.metrics import ServeMetrics
from lora_tasks.serve.policies import make_policy
from lora_tasks.serve.settings import ServeSettings
from lora_tasks.settings import PlatformSettings

RAM_SLOTS_PER_PIPELINE_SLOT = 4
"""The RAM tier's entry-count hint for its policy (it is bounded by bytes): a few times the pipeline's."""


class AdapterService:
    def __init__(self, settings: ServeSettings, platform: PlatformSettings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.s3_endpoint_url = platform.s3_endpoint_url
        self.ledger: Ledger = open_ledger(platform.ledger_url)
        self.engine = engine or Engine(settings.base_model, settings.device, settings.hotswap, settings.fuse)
        self.ram = RamTier(settings.ram_bytes,
                           make_policy(settings.policy, RAM_SLOTS_PER_PIPELINE_SLOT * settings.pipeline_slots))
        self.pipeline = PipelineTier(self.engine, settings.pipeline_slots, settings.pipeline_bytes,
                                     make_policy(settings.policy, settings.pipeline_slots))
        self.metrics = ServeMetrics([(self.pipeline.name, self.pipeline.stats), (self.ram.name, self.ram.stats)])

    def tenant_for_api_key(self, key: str) -> str | None:
        return self.ledger.tenant_for_api_key(key)

    def generate(self, tenant: str, ref: str, params: GenerationParams) -> bytes:
        """A PNG of ``params`` with the adapter ``ref`` names for ``tenant`` (AdapterNotFound when it names
        none the tenant may use; AdapterIntegrityError when its files fail their checks)."""
        version = self.ledger.resolve_adapter(tenant, ref)
        key = adapter_key(version)
        weights = self._weights(key, version)
        prefetched = None if key in self.pipeline else weights()
        with self.engine.lock:
            missed = key not in self.pipeline
            started = time.perf_counter()
            name = self.pipeline.admit(key, lambda: prefetched or weights())
            if missed:
                self.metrics.load_seconds.labels(self.pipeline.name).observe(time.perf_counter() - started)
            started = time.perf_counter()
            image = self.engine.generate(name, params)
            self.metrics.generate_seconds.observe(time.perf_counter() - started)
        return png_bytes(image)

    def _weights(self, key: str, version: AdapterVersion) -> Callable[[], AdapterWeights]:
        """The RAM tier's answer for ``key``, loading from the store (timed) on a miss."""

        def from_store() -> AdapterWeights:
            started = time.perf_counter()
            weights = load_adapter(version, self.s3_endpoint_url)
            self.metrics.load_seconds.labels(self.ram.name).observe(time.perf_counter() - started)
            return weights

        return lambda: self.ram.get_or_load(key, from_store)

    def adapters(self, tenant: str) -> dict[str, Any]:
        """The tenant's published versions, each with the tier holding it; other tenants' keys never show."""
        pipeline, ram = set(self.pipeline.keys()), set(self.ram.keys())
        listed = []
        for version in self.ledger.adapter_versions(tenant=tenant):
            key = adapter_key(version)
            tier = "pipeline" if key in pipeline else "ram" if key in ram else None
            listed.append({"ref": version.ref, "name": version.name, "version": version.version,
                           "public": version.public, "base_model": version.base_model, "cached": tier,
                           "published_at": version.published_at.isoformat() if version.published_at else None})
        own = f"{tenant}/"
        return {"tenant": tenant, "adapters": listed,
                "cached": {"pipeline": sorted(k for k in pipeline if k.startswith(own)),
                           "ram": sorted(k for k in ram if k.startswith(own))}}
