"""Publishing to file:// and s3://: every file with its digest in the manifest, the manifest last, the card
a Hugging Face model card, versions numbered by the registry and never shared."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from huggingface_hub import ModelCard

from lora_tasks.digests import file_digest
from lora_tasks.ledger.store import Ledger
from lora_tasks.publish.publish import PublishResult, publish_adapter
from lora_tasks.spec.schema import JobSpec
from lora_tasks.stores import open_store
from lora_tasks.stores.base import Store
from lora_tasks.stores.versions import MANIFEST, verify_version
from tests.faulty_proxy import FaultyProxy
from tests.lora_tasks.publish.conftest import make_spec

MOMENT = datetime(2026, 12, 2, 18, 45, tzinfo=UTC)
EXPECTED = {"pytorch_lora_weights.safetensors", "cats.safetensors", "adapter_model.safetensors",
            "adapter_config.json", "training_summary.json", "job.yaml", "README.md", "eval_report.json",
            "sample_grid.png", "loss_curve.png", "samples/base_00.png", "samples/lora_00.png"}


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "file":
        return open_store((tmp_path / "artifacts").as_uri())
    return request.getfixturevalue("s3_store")


def publish(store: Store, ledger: Ledger, spec: JobSpec, adapter_dir: Path, eval_dir: Path | None,
            run_id: str = "run-1") -> PublishResult:
    return publish_adapter(store, ledger, spec=spec, run_id=run_id, adapter_dir=adapter_dir, eval_dir=eval_dir,
                           metadata={"priority": "standard"}, clock=lambda: MOMENT)


def record_writes(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    keys: list[str] = []
    for method in ("upload", "write", "write_if_absent"):
        original = getattr(store, method)

        def recording(key: str, *args: Any, _original: Any = original) -> Any:
            keys.append(key.rsplit("/v1/", 1)[-1])
            return _original(key, *args)

        monkeypatch.setattr(store, method, recording)
    return keys


def test_a_version_holds_every_file_with_its_digest_and_the_manifest_last(
        store: Store, ledger: Ledger, spec: JobSpec, adapter_dir: Path, eval_dir: Path,
        monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    writes = record_writes(store, monkeypatch)
    result = publish(store, ledger, spec, adapter_dir, eval_dir)
    prefix = "tenants/acme/loras/cats/v1"
    assert (result.version, result.uri, result.files) == (1, f"{store.uri}/{prefix}", len(EXPECTED))
    manifest = verify_version(store, "acme", "cats", "v1")
    assert set(manifest["files"]) == EXPECTED and set(store.list(prefix)) == {f"{prefix}/{f}" for f in
                                                                              [*EXPECTED, MANIFEST]}
    sources = {"samples/lora_00.png": eval_dir / "samples/lora_00.png", "cats.safetensors": adapter_dir /
               "cats.safetensors", "eval_report.json": eval_dir / "eval_report.json"}
    assert all(manifest["files"][f] == file_digest(p) for f, p in sources.items())
    assert result.bytes == sum(d["bytes"] for d in manifest["files"].values())
    assert (manifest["version"], manifest["run_id"], manifest["priority"]) == ("v1", "run-1", "standard")
    assert manifest["published_at"] == "2026-12-02T18:45:00+00:00"
    assert writes[-1] == MANIFEST and sorted(writes[:-1]) == sorted(EXPECTED)
    if "s3_store" in request.fixturenames:  # and the server saw it last too
        proxy: FaultyProxy = request.getfixturevalue("proxy")
        assert proxy.writes()[-1].endswith(f"/{prefix}/{MANIFEST}") and not proxy.faults()
    assert yaml.safe_load(store.read(f"{prefix}/job.yaml")) == spec.to_yaml_dict()

    card = ModelCard(store.read(f"{prefix}/README.md").decode())
    data = card.data.to_dict()
    assert (data["base_model"], data["instance_prompt"], data["license"]) == ("org/tiny-sd", "sks",
                                                                            "creativeml-openrail-m")
    assert {"lora", "diffusers", "text-to-image"} <= set(data["tags"])
    assert data["widget"] == [{"text": "sks, a cat", "output": {"url": "sample_grid.png"}}]
    assert 'weight_name="pytorch_lora_weights.safetensors"' in card.text and "<lora:cats:1>" in card.text
    assert "| CLIP score, with the LoRA | 0.27 |" in card.text and "- a note for the reader" in card.text

    [row] = ledger.adapter_versions("acme", "cats")
    assert (row.version, row.uri, row.status, row.public) == (1, result.uri, "published", False)
    assert row.figures["eval_loss_ratio"] == 0.69 and row.figures["eval_clip_lora"] == 0.27
    assert row.figures["steps"] == 60


def test_the_card_loads_from_a_local_version(tmp_path: Path, ledger: Ledger, spec: JobSpec, adapter_dir: Path,
                                             eval_dir: Path) -> None:
    store = open_store(str(tmp_path / "artifacts"))
    result = publish(store, ledger, spec, adapter_dir, eval_dir)
    folder = Path(result.uri.removeprefix("file://"))
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == "org/tiny-sd"
    assert f'pipe.load_lora_weights("{folder}"' in card.text  # copy-paste: the version's own folder


def test_without_an_evaluation_folder_the_card_shows_no_grid(tmp_path: Path, ledger: Ledger, spec: JobSpec,
                                                              adapter_dir: Path) -> None:
    store = open_store(str(tmp_path / "artifacts"))
    publish(store, ledger, spec, adapter_dir, None)
    manifest = verify_version(store, "acme", "cats", "v1")
    assert not {"eval_report.json", "sample_grid.png"} & set(manifest["files"])
    card = ModelCard(store.read("tenants/acme/loras/cats/v1/README.md").decode())
    assert "widget" not in card.data.to_dict() and "sample_grid" not in card.text and "## Evaluation" not in card.text


def test_republishing_a_run_is_the_same_version(store: Store, ledger: Ledger, spec: JobSpec, adapter_dir: Path,
                                                 eval_dir: Path) -> None:
    first = publish(store, ledger, spec, adapter_dir, eval_dir)
    manifest = store.read("tenants/acme/loras/cats/v1/manifest.json")
    again = publish(store, ledger, spec, adapter_dir, eval_dir)
    assert (again.version, again.uri) == (first.version, first.uri) == (1, first.uri)
    assert store.read("tenants/acme/loras/cats/v1/manifest.json") == manifest
    assert [v.version for v in ledger.adapter_versions("acme", "cats", published_only=False)] == [1]


def test_two_concurrent_publishes_of_one_name_get_two_complete_versions(
        store: Store, ledger: Ledger, spec: JobSpec, adapter_dir: Path, eval_dir: Path) -> None:
    results: dict[str, PublishResult] = {}
    barrier = threading.Barrier(2)

    def run(run_id: str) -> None:
        barrier.wait()
        results[run_id] = publish(store, ledger, spec, adapter_dir, eval_dir, run_id=run_id)

    threads = [threading.Thread(target=run, args=(f"run-{i}",)) for i in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.version for r in results.values()) == [1, 2]
    for result in results.values():
        manifest = verify_version(store, "acme", "cats", f"v{result.version}")
        assert manifest["run_id"] == next(k for k, v in results.items() if v.version == result.version)
    assert [v.version for v in ledger.adapter_versions("acme", "cats")] == [1, 2]


def test_a_missing_format_is_refused_before_anything_is_uploaded(tmp_path: Path, ledger: Ledger, adapter_dir: Path,
                                                                 eval_dir: Path) -> None:
    from lora_tasks.errors import LoraTaskError

    (adapter_dir / "cats.safetensors").unlink()
    store = open_store(str(tmp_path / "artifacts"))
    with pytest.raises(LoraTaskError, match=r"lacks cats\.safetensors .*nothing was published"):
        publish(store, ledger, make_spec(), adapter_dir, eval_dir)
    assert store.list() == [] and ledger.adapter_versions("acme", published_only=False) == []


def test_a_public_adapter_is_marked_public(tmp_path: Path, ledger: Ledger, adapter_dir: Path, eval_dir: Path) -> None:
    store = open_store(str(tmp_path / "artifacts"))
    publish(store, ledger, make_spec(public=True), adapter_dir, eval_dir)
    [row] = ledger.adapter_versions("acme", "cats")
    assert row.public and json.loads(store.read("tenants/acme/loras/cats/v1/manifest.json"))["formats"] == [
        "diffusers", "kohya", "peft"]
