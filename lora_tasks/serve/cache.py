"""Two cache tiers, as vLLM keeps LoRAs: host RAM holds adapter state dicts (bounded by bytes), the
pipeline holds the adapters loaded into the model (bounded by count and bytes).

A request first asks the pipeline tier; on a miss the RAM tier gives the state dict, reading the store
on its own miss. The tiers enforce their bounds; an ``EvictionPolicy`` only chooses who leaves. Leaving
the pipeline tier deletes the adapter from the model (its memory is returned), leaving the RAM tier drops
the tensors. Loads from the store are single-flight: concurrent misses on one key read it once.

A miss in the pipeline tier loads the adapter into the slot of the one it evicts (``replace_adapter``):
the model can copy weights into the layers already there (diffusers' hotswap) instead of injecting new
ones, which is most of a miss's cost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from lora_tasks.serve.loader import AdapterWeights
from lora_tasks.serve.policies import EvictionPolicy


@dataclass
class TierStats:
    """Counts since the process started, read by /metrics."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    bytes: int = 0
    entries: int = 0


class RamTier:
    """Adapter state dicts in host memory, at most ``max_bytes`` of tensors."""

    name = "ram"

    def __init__(self, max_bytes: int, policy: EvictionPolicy) -> None:
        self.max_bytes = max_bytes
        self.policy = policy
        self.stats = TierStats()
        self._entries: dict[str, AdapterWeights] = {}
        self._flights: dict[str, Future[AdapterWeights]] = {}
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def get_or_load(self, key: str, load: Callable[[], AdapterWeights]) -> AdapterWeights:
        """The weights of ``key``: from RAM, from a load already under way, or from ``load`` (whose
        error reaches every waiter and leaves nothing cached)."""
        with self._lock:
            if key in self._entries:
                self.stats.hits += 1
                self.policy.hit(key)
                return self._entries[key]
            self.stats.misses += 1
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = Future()
        if not leader:
            return flight.result()
        try:
            weights = load()
            self._put(key, weights)
        except BaseException as exc:
            self._land(key)
            flight.set_exception(exc)
            raise
        self._land(key)
        flight.set_result(weights)
        return weights

    def _land(self, key: str) -> None:
        """The load is over: later misses start their own (after it was kept, they are hits)."""
        with self._lock:
            self._flights.pop(key, None)

    def _put(self, key: str, weights: AdapterWeights) -> None:
        """Keep it if it fits at all, evicting until it does (an adapter larger than the tier is used, not kept)."""
        size = weights.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            self.policy.insert(key)  # first: the policy then never chooses the key being admitted
            while self.stats.bytes + size > self.max_bytes:
                self._drop(self.policy.evict())
            self._entries[key] = weights
            self.stats.bytes += size
            self.stats.entries = len(self._entries)

    def _drop(self, key: str) -> None:
        self.stats.bytes -= self._entries.pop(key).nbytes
        self.stats.evictions += 1
        self.stats.entries = len(self._entries)


class AdapterHost(Protocol):
    """The model the pipeline tier loads adapters into (``engine.Engine``)."""

    def adapter_bytes(self, weights: AdapterWeights) -> int:
        """What loading ``weights`` adds to the model, in bytes."""

    def load_adapter(self, name: str, weights: AdapterWeights) -> None: ...

    def replace_adapter(self, name: str, weights: AdapterWeights) -> None:
        """Load ``weights`` as ``name`` in place of the adapter loaded under that name; on failure neither is
        loaded."""

    def delete_adapter(self, name: str) -> None: ...


class PipelineTier:
    """Adapters loaded into the model: at most ``slots`` of them and ``max_bytes`` of their weights. Not
    locked: its caller holds the model's lock, since loading and deleting change the model's modules."""

    name = "pipeline"

    def __init__(self, host: AdapterHost, slots: int, max_bytes: int, policy: EvictionPolicy) -> None:
        self.host = host
        self.slots = slots
        self.max_bytes = max_bytes
        self.policy = policy
        self.stats = TierStats()
        self._names: dict[str, tuple[str, int]] = {}
        self._loaded = 0

    def __contains__(self, key: object) -> bool:
        return key in self._names

    def keys(self) -> list[str]:
        return sorted(self._names.copy())  # read while a request may be admitting

    def admit(self, key: str, weights: Callable[[], AdapterWeights]) -> str:
        """The model's adapter name for ``key``, loading ``weights()`` on a miss into the slot of the last
        adapter it evicts (or a new one while slots are free)."""
        if key in self._names:
            self.stats.hits += 1
            self.policy.hit(key)
            return self._names[key][0]
        self.stats.misses += 1
        adapter = weights()
        size = self.host.adapter_bytes(adapter)
        self.policy.insert(key)  # first: the policy then never chooses the key being admitted
        evicted = []
        while self._names and (len(self._names) >= self.slots or self.stats.bytes + size > self.max_bytes):
            evicted.append(self._evict(self.policy.evict()))
        name = evicted.pop() if evicted else None
        for stale in evicted:
            self.host.delete_adapter(stale)
        try:
            if name is None:
                self._loaded += 1
                name = f"adapter_{self._loaded}"
                self.host.load_adapter(name, adapter)
            else:
                self.host.replace_adapter(name, adapter)
        except BaseException:
            self.policy.discard(key)
            raise
        self._names[key] = (name, size)
        self.stats.bytes += size
        self.stats.entries = len(self._names)
        return name

    def _evict(self, key: str) -> str:
        """Forget ``key``; its name's layers stay in the model until the caller replaces or deletes them."""
        name, size = self._names.pop(key)
        self.stats.bytes -= size
        self.stats.evictions += 1
        self.stats.entries = len(self._names)
        return name
