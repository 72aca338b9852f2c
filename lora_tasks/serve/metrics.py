"""What /metrics shows, in Prometheus' text format, from a registry of the app's own (two apps in one
process, as in the tests, never share counts).

The tiers count their own hits, misses, evictions and bytes; a collector reads them at scrape time, so the
cache needs no Prometheus import and the counts cannot drift from the tiers. Latencies are histograms.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lora_tasks.serve.cache import TierStats

LOAD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
GENERATE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class TierCollector(Collector):
    """Counters and gauges of each tier, labelled ``tier``."""

    def __init__(self, tiers: Sequence[tuple[str, TierStats]]) -> None:
        self.tiers = tiers

    def collect(self) -> Iterator[Metric]:
        families = {
            "hits": CounterMetricFamily("lora_serve_cache_hits", "requests the tier answered", labels=["tier"]),
            "misses": CounterMetricFamily("lora_serve_cache_misses", "requests the tier had to load",
                                          labels=["tier"]),
            "evictions": CounterMetricFamily("lora_serve_cache_evictions", "adapters the tier let go",
                                             labels=["tier"]),
            "bytes": GaugeMetricFamily("lora_serve_cached_bytes", "adapter bytes the tier holds", labels=["tier"]),
            "entries": GaugeMetricFamily("lora_serve_cached_adapters", "adapters the tier holds", labels=["tier"]),
        }
        for tier, stats in self.tiers:
            for field, family in families.items():
                family.add_metric([tier], getattr(stats, field))
        yield from families.values()


class ServeMetrics:
    """One app's registry: the tiers' counts plus load and generate latencies."""

    def __init__(self, tiers: Sequence[tuple[str, TierStats]]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(TierCollector(tiers))
        self.load_seconds = Histogram("lora_serve_load_seconds", "loading an adapter into a tier (ram: from the "
                                      "store, checked; pipeline: into the model)", ["tier"], registry=self.registry,
                                      buckets=LOAD_BUCKETS)
        self.generate_seconds = Histogram("lora_serve_generate_seconds", "one image, from the pipeline lock to "
                                          "the decoded image", registry=self.registry, buckets=GENERATE_BUCKETS)
        for tier, _ in tiers:
            self.load_seconds.labels(tier)  # every tier's series shows from the first scrape
