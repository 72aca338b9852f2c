"""A write that must not replace anything (a version's manifest): the first writer wins, on a local folder
(a hard link) and on S3 (a conditional PutObject), and two publishers of one version cannot both win."""

from __future__ import annotations

import threading
from pathlib import Path

import boto3
import pytest

from lora_tasks.errors import LoraTaskError
from lora_tasks.stores import open_store
from lora_tasks.stores.base import Store
from lora_tasks.stores.versions import publish_version


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return open_store(str(tmp_path / "root"))
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"exclusive-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return open_store(f"s3://{bucket}/platform", endpoint)


def test_the_first_writer_wins(store: Store) -> None:
    assert store.write_if_absent("v1/manifest.json", b"first")
    assert not store.write_if_absent("v1/manifest.json", b"second")
    assert store.read("v1/manifest.json") == b"first" and store.list("v1") == ["v1/manifest.json"]


def test_two_publishers_of_one_version_with_different_files_cannot_both_win(store: Store, tmp_path: Path) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def publish(content: bytes) -> None:
        weights = tmp_path / f"{content.decode()}.safetensors"
        weights.write_bytes(content)
        barrier.wait()
        try:
            publish_version(store, "acme", "cats", "v1", {"w.safetensors": weights}, {})
            outcomes.append("published")
        except LoraTaskError as exc:
            assert "already published with different files" in str(exc)
            outcomes.append("refused")

    threads = [threading.Thread(target=publish, args=(c,)) for c in (b"one", b"two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["published", "refused"]


def test_the_manifest_name_is_the_publish_s_own(store: Store, tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(LoraTaskError, match="written by the publish itself"):
        publish_version(store, "acme", "cats", "v1", {"manifest.json": tmp_path / "m.json"}, {})
