"""``python -m lora_tasks.serve`` as the demo runs it: its own process, the platform's ledger and store from
the environment, one image for a key's tenant, and stopped again by what ``make down`` calls."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from lora_airflow.demo_service import generate_demo_image, start_service, stop_service
from lora_airflow.local_stack import free_port
from tests.lora_tasks.serve.conftest import Registry


def test_the_cli_serves_a_tenants_adapter_and_stops(registry: Registry, tiny_model: Path, tmp_path: Path) -> None:
    registry.publish("initech", "poster", seed=11)
    key = registry.ledger.create_api_key("initech")
    env = {"LORA_ARTIFACT_ROOT": registry.platform.artifact_root, "LORA_LEDGER_URL": registry.platform.ledger_url,
           "HF_HUB_OFFLINE": "1"}
    url = start_service(tiny_model, free_port(), env, home=tmp_path)
    try:
        image = generate_demo_image(url, key, "poster", "sks, a poster", tmp_path / "poster.png")
        assert Image.open(io.BytesIO(image.read_bytes())).size == (64, 64)
        assert 'lora_serve_cache_misses_total{tier="pipeline"} 1.0' in httpx.get(f"{url}/metrics").text
        with pytest.raises(RuntimeError, match="401"):
            generate_demo_image(url, "lora_not_a_key", "poster", "sks", tmp_path / "no.png")
        assert not (tmp_path / "no.png").exists()
    finally:
        stop_service(tmp_path)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=5)
