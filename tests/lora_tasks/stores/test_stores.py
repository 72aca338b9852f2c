"""One store contract, two backends: a local folder and S3 (moto in server mode, over HTTP)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from lora_tasks.errors import StoreError
from lora_tasks.stores import open_store
from lora_tasks.stores.base import Store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return open_store(str(tmp_path / "root"))
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"stores-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return open_store(f"s3://{bucket}/platform", endpoint)


def test_objects_round_trip(store: Store, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 4096)
    store.write("cats/a.txt", b"a")
    store.upload("cats/sub/big.bin", big)
    store.write("catsalike/b.txt", b"b")
    assert store.list("cats") == ["cats/a.txt", "cats/sub/big.bin"]  # a prefix is a folder, not a string
    assert [(o.key, o.size) for o in store.objects("cats/sub")] == [("cats/sub/big.bin", big.stat().st_size)]
    assert store.read("cats/a.txt") == b"a" and store.exists("cats/a.txt") and not store.exists("cats/none")
    store.download("cats/sub/big.bin", tmp_path / "copy" / "big.bin")
    assert (tmp_path / "copy" / "big.bin").read_bytes() == big.read_bytes()
    assert [p.name for p in (tmp_path / "copy").iterdir()] == ["big.bin"]  # no partial file left behind
    store.delete("cats/a.txt")
    assert store.list("cats") == ["cats/sub/big.bin"] and store.list("nothing") == []
    assert store.uri_of("cats/sub/big.bin") == f"{store.uri}/cats/sub/big.bin"


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", ""])
def test_keys_stay_inside_the_root(store: Store, key: str) -> None:
    with pytest.raises(StoreError, match="could escape"):
        store.write(key, b"x")


def test_a_missing_object_and_a_missing_bucket_say_so(store: Store, s3_endpoint: str) -> None:
    with pytest.raises(StoreError, match=r"does not exist|cannot be read"):
        store.read("never/written")
    with pytest.raises(StoreError, match="bucket 'no-such-bucket' does not exist"):
        open_store("s3://no-such-bucket/x", s3_endpoint).objects()


@pytest.mark.parametrize(("uri", "message"), [("ftp://host/x", "unsupported scheme"), ("s3:///x", "names no bucket")])
def test_unsupported_uris(uri: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        open_store(uri)


def test_a_published_version_is_verified_and_immutable_and_stamped_by_the_clock(store: Store, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from lora_tasks.errors import LoraTaskError
    from lora_tasks.stores.versions import publish_version, verify_version

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"weights")
    moment = datetime(2026, 11, 30, 23, 59, 58, tzinfo=UTC)
    manifest = publish_version(store, "acme", "cats", "v1", {"w.safetensors": weights}, {"base_model": "m"},
                               clock=lambda: moment)
    assert manifest["published_at"] == "2026-11-30T23:59:58+00:00"
    assert verify_version(store, "acme", "cats", "v1")["files"]["w.safetensors"]["bytes"] == len(b"weights")
    weights.write_bytes(b"other weights")
    with pytest.raises(LoraTaskError, match="already published with different files"):
        publish_version(store, "acme", "cats", "v1", {"w.safetensors": weights}, {}, clock=lambda: moment)
