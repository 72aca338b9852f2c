"""The HTTP API end to end on the tiny model: who may call, which adapters a tenant sees, what a bad
request or a tampered store answers, and what /metrics counts."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lora_tasks.serve.app import create_app
from lora_tasks.serve.settings import ServeSettings
from tests.lora_tasks.serve.conftest import SIZE, Registry


@dataclass
class Api:
    client: TestClient
    acme: dict[str, str]
    globex: dict[str, str]


@pytest.fixture(scope="module")
def api(registry: Registry, serve_settings: ServeSettings) -> Api:
    registry.publish("acme", "style", seed=1)
    registry.publish("acme", "style", seed=2)
    registry.publish("acme", "tampered", seed=3)
    registry.publish("globex", "secret", seed=4)
    registry.publish("globex", "shared", seed=5, public=True)
    keys = {t: {"Authorization": f"Bearer {registry.ledger.create_api_key(t)}"} for t in ("acme", "globex")}
    client = TestClient(create_app(serve_settings, registry.platform))
    return Api(client, keys["acme"], keys["globex"])


def generate(api: Api, adapter: str, headers: dict[str, str] | None = None, **fields: object) -> object:
    body = {"adapter": adapter, "prompt": "sks, a teal circle", **SIZE, **fields}
    return api.client.post("/v1/generate", json=body, headers=api.acme if headers is None else headers)


def metric(api: Api, name: str, tier: str) -> float:
    text = api.client.get("/metrics").text
    return float(re.search(rf'^{name}{{tier="{tier}"}} (\S+)$', text, re.M).group(1))


def test_a_png_of_the_asked_size_comes_back(api: Api) -> None:
    reply = generate(api, "style", seed=7)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(reply.content)).size == (64, 64)
    assert generate(api, "style@2", seed=7).content == reply.content  # the latest is version 2
    assert generate(api, "style@1", seed=7).content != reply.content


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer lora_wrong"}, {"X-API-Key": "wrong"},
                                     {"Authorization": "Basic YWxhZGRpbjpvcGVu"}])
def test_a_missing_or_wrong_key_is_401(api: Api, headers: dict[str, str]) -> None:
    for reply in (generate(api, "style", headers=headers), api.client.get("/v1/adapters", headers=headers)):
        assert reply.status_code == 401
        assert "API key" in reply.json()["detail"]


def test_the_x_api_key_header_works_too(api: Api) -> None:
    key = api.acme["Authorization"].removeprefix("Bearer ")
    assert generate(api, "style", headers={"X-API-Key": key}).status_code == 200


def test_unknown_and_foreign_private_adapters_are_the_same_404(api: Api) -> None:
    foreign, absent = generate(api, "globex/secret"), generate(api, "globex/absent")
    assert (foreign.status_code, absent.status_code) == (404, 404)
    assert foreign.json()["detail"] == absent.json()["detail"].replace("globex/absent", "globex/secret")
    assert generate(api, "secret").status_code == 404  # without the owner, it is acme's own (none)
    assert generate(api, "style@9").status_code == 404
    assert generate(api, "secret", headers=api.globex).status_code == 200  # its owner may


def test_a_public_adapter_of_another_tenant_is_usable_by_owner_and_name(api: Api) -> None:
    assert generate(api, "globex/shared").status_code == 200


def test_a_tampered_file_is_422_and_nothing_is_cached_until_it_is_restored(api: Api, registry: Registry) -> None:
    weights = registry.weights_file("acme", "tampered", 1)
    original = weights.read_bytes()
    weights.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    reply = generate(api, "tampered")
    assert reply.status_code == 422
    assert "does not match its manifest" in reply.json()["detail"]
    cached = api.client.get("/v1/adapters", headers=api.acme).json()["cached"]
    assert "acme/tampered@1" not in cached["pipeline"] + cached["ram"]
    weights.write_bytes(original)
    assert generate(api, "tampered").status_code == 200


@pytest.mark.parametrize(("field", "value", "message"), [
    ("width", 10_000, "width must be <= 1024"), ("height", 10_000, "height must be <= 1024"),
    ("steps", 10_000, "steps must be <= 100"), ("width", 60, "width must be a multiple of 8"),
    ("prompt", "x" * 5000, "prompt must be at most 2000 characters"), ("tenant", "globex", "tenant is not a field"),
])
def test_requests_over_a_limit_are_422_naming_it(api: Api, field: str, value: object, message: str) -> None:
    reply = generate(api, "style", **{field: value})
    assert reply.status_code == 422
    assert message in reply.json()["detail"]


def test_adapters_lists_the_tenants_own_and_what_is_cached(api: Api) -> None:
    assert generate(api, "style@1").status_code == 200
    listing = api.client.get("/v1/adapters", headers=api.acme).json()
    assert listing["tenant"] == "acme"
    assert {a["ref"] for a in listing["adapters"]} == {"style@1", "style@2", "tampered@1"}
    assert "acme/style@1" in listing["cached"]["pipeline"]
    assert next(a for a in listing["adapters"] if a["ref"] == "style@1")["cached"] == "pipeline"
    assert all(key.startswith("acme/") for keys in listing["cached"].values() for key in keys)


def test_metrics_count_hits_and_misses_per_tier(api: Api) -> None:
    text = api.client.get("/metrics").text
    for name in ("lora_serve_cache_hits_total", "lora_serve_cache_misses_total", "lora_serve_cache_evictions_total",
                 "lora_serve_cached_bytes", "lora_serve_load_seconds_bucket", "lora_serve_generate_seconds_count"):
        assert name in text
    generate(api, "globex/shared")
    misses, hits = metric(api, "lora_serve_cache_misses_total", "pipeline"), metric(
        api, "lora_serve_cache_hits_total", "pipeline")
    generate(api, "globex/shared")
    assert metric(api, "lora_serve_cache_hits_total", "pipeline") == hits + 1
    assert metric(api, "lora_serve_cache_misses_total", "pipeline") == misses
    for ref in ("style@1", "style@2"):  # two slots, LRU: globex/shared leaves the pipeline, stays in RAM
        generate(api, ref)
    misses, ram_hits = metric(api, "lora_serve_cache_misses_total", "pipeline"), metric(
        api, "lora_serve_cache_hits_total", "ram")
    generate(api, "globex/shared")
    assert metric(api, "lora_serve_cache_misses_total", "pipeline") == misses + 1
    assert metric(api, "lora_serve_cache_hits_total", "ram") == ram_hits + 1
    assert metric(api, "lora_serve_cache_evictions_total", "pipeline") >= 1
    assert metric(api, "lora_serve_cached_bytes", "pipeline") > 0


def test_healthz(api: Api) -> None:
    reply = api.client.get("/healthz")
    assert reply.status_code == 200
    assert reply.json()["status"] == "ok"

