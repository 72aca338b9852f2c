"""Concurrent requests for different adapters, through a real uvicorn, with fewer pipeline slots than
adapters (so loads and evictions interleave with generations): every image equals, byte for byte, the
one the same request gives alone."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from lora_tasks.serve.app import create_app
from lora_tasks.serve.server import running_server
from lora_tasks.serve.settings import ServeSettings
from tests.lora_tasks.serve.conftest import SIZE, Registry

ADAPTERS = [("acme", "ink"), ("acme", "oil"), ("acme", "neon"), ("globex", "chalk"), ("globex", "pixel")]
REQUESTS_PER_ADAPTER = 4
CLIENTS = 8


@pytest.fixture(scope="module")
def keys(registry: Registry) -> dict[str, str]:
    for seed, (tenant, name) in enumerate(ADAPTERS, start=100):
        registry.publish(tenant, name, seed=seed)
    return {tenant: registry.ledger.create_api_key(tenant) for tenant in {t for t, _ in ADAPTERS}}


def test_concurrent_images_equal_the_ones_each_request_gives_alone(
        registry: Registry, serve_settings: ServeSettings, keys: dict[str, str]) -> None:
    requests = [(tenant, name, seed) for tenant, name in ADAPTERS for seed in range(REQUESTS_PER_ADAPTER)]
    random.Random(0).shuffle(requests)

    with running_server(create_app(serve_settings, registry.platform)) as url, httpx.Client(timeout=120) as http:
        def ask(request: tuple[str, str, int]) -> bytes:
            tenant, name, seed = request
            reply = http.post(f"{url}/v1/generate", headers={"X-API-Key": keys[tenant]},
                              json={"adapter": name, "prompt": "sks, a teal circle", "seed": seed, **SIZE})
            assert reply.status_code == 200, reply.text
            return reply.content

        alone = {request: ask(request) for request in requests}
        with ThreadPoolExecutor(CLIENTS) as pool:
            together = dict(zip(requests, pool.map(ask, requests), strict=True))
        evictions = http.get(f"{url}/metrics").text

    assert len(set(alone.values())) == len(requests)  # every adapter and seed draws its own image
    assert {r for r in requests if together[r] != alone[r]} == set()
    assert 'lora_serve_cache_evictions_total{tier="pipeline"} 0.0' not in evictions
