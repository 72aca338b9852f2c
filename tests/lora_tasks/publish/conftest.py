"""A trained adapter and its evaluation as the stages leave them (small files), a job spec, the ledger, and
S3 behind the fault-injecting proxy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from lora_tasks.ledger.store import Ledger, open_ledger
from lora_tasks.spec.schema import JobSpec
from lora_tasks.stores.s3 import S3Store
from tests.faulty_proxy import FaultyProxy

SUMMARY = {"steps": 60, "epochs": 3, "images": 24, "train_loss": {"first": 1.1, "last": 0.8},
           "lora": {"rank": 4, "alpha": 4.0, "method": "lora", "target_modules": ["to_q", "to_v"]},
           "settings": {"device": "cpu", "precision": "no", "batch_size": 2}, "median_step_seconds": 0.03,
           "peak_memory_bytes": 555 << 20, "started_at": "2026-12-02T18:44:00+00:00",
           "finished_at": "2026-12-02T18:44:15+00:00", "base_model": {"kind": "hub", "location": "org/tiny-sd"}}
REPORT = {"images": 2, "held_out": True, "base_loss": 1.13, "lora_loss": 0.78, "loss_ratio": 0.69,
          "max_loss_ratio": 1.02, "min_clip_score": None, "clip_model": "tiny-clip",
          "clip_score": {"base": 0.21, "lora": 0.27}, "passed": True, "notes": ["a note for the reader"],
          "sampling": {"steps": 10, "guidance": 7.5, "size": 64, "scheduler": "DDIMScheduler", "seed": 0},
          "samples": [{"index": 0, "prompt": "sks, a cat", "with_trigger": True, "base": "samples/base_00.png",
                       "lora": "samples/lora_00.png"}], "sample_grid": "sample_grid.png"}


def make_spec(name: str = "cats", formats: tuple[str, ...] = ("diffusers", "kohya", "peft"), **output: Any) -> JobSpec:
    return JobSpec.model_validate({
        "job": {"name": name, "tenant": "acme"}, "dataset": {"trigger_word": "sks"},
        "model_config": {"base_model": "org/tiny-sd"},
        "output": {"formats": list(formats), "license": "creativeml-openrail-m", **output},
    })


@pytest.fixture
def spec() -> JobSpec:
    return make_spec()


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Path:
    """What the trainer writes for formats diffusers + kohya + peft (random bytes: publishing never parses them)."""
    folder = tmp_path / "train" / "adapter"
    folder.mkdir(parents=True)
    for index, name in enumerate(["pytorch_lora_weights.safetensors", "cats.safetensors", "adapter_model.safetensors"]):
        (folder / name).write_bytes(bytes([index]) * (3000 + index))
    (folder / "adapter_config.json").write_text('{"r": 4}')
    (folder / "training_summary.json").write_text(json.dumps(SUMMARY))
    (folder / "job.yaml").write_text("job: {name: cats}\n")
    return folder


@pytest.fixture
def eval_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "evaluate"
    (folder / "samples").mkdir(parents=True)
    (folder / "eval_report.json").write_text(json.dumps(REPORT))
    for name in ["sample_grid.png", "loss_curve.png", "samples/base_00.png", "samples/lora_00.png"]:
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n" + name.encode())
    return folder


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return open_ledger(f"sqlite:///{tmp_path}/ledger.db")


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's own retries, every attempt made, with its back-off sleeps cut a hundredfold (throttling
    waits up to 8 s by the fifth attempt)."""
    from botocore.retries.standard import ExponentialBackoff

    delay = ExponentialBackoff.delay_amount
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: delay(self, context) / 100)


@pytest.fixture
def bucket(s3_endpoint: str, tmp_path: Path) -> str:
    name = f"publish-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultyProxy]:
    with FaultyProxy(s3_endpoint) as running:
        yield running


@pytest.fixture
def s3_store(proxy: FaultyProxy, bucket: str) -> S3Store:
    """The artifact store on S3, reached through the proxy."""
    return S3Store(bucket, "platform", proxy.url)


@pytest.fixture
def direct_store(s3_endpoint: str, bucket: str) -> S3Store:
    """The same store without the proxy: what a reader sees."""
    return S3Store(bucket, "platform", s3_endpoint)
