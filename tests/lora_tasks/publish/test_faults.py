"""Publishing to S3 when S3 fails: through a proxy in front of moto that answers 500s, throttles, drops
connections and loses replies. Retried failures publish exactly once; S3 down or a publish cut off halfway
leaves no manifest and no registry entry, and the retry completes the same version."""

from __future__ import annotations

import socket
from pathlib import Path

import boto3
import pytest

from lora_tasks.digests import file_digest
from lora_tasks.ledger.store import Ledger
from lora_tasks.publish.publish import PublishError, publish_adapter
from lora_tasks.spec.schema import JobSpec
from lora_tasks.stores.s3 import S3Store
from lora_tasks.stores.versions import MANIFEST, verify_version
from tests.faulty_proxy import FaultyProxy

PREFIX = "tenants/acme/loras/cats/v1"


def publish(store: S3Store, ledger: Ledger, spec: JobSpec, adapter_dir: Path, eval_dir: Path) -> int:
    return publish_adapter(store, ledger, spec=spec, run_id="run-1", adapter_dir=adapter_dir,
                           eval_dir=eval_dir).version


@pytest.mark.parametrize(("fault", "method", "path"), [
    ("500", "PUT", ""),  # InternalError on the first uploads
    ("503", "PUT", ""),  # SlowDown: throttled
    ("drop", "PUT", ""),  # the connection closes before the request reaches S3
    ("500", "HEAD", MANIFEST),  # the "is it published?" check fails first
    ("lost_reply", "PUT", MANIFEST),  # the manifest lands, its reply is lost: the retry meets its own manifest
])
def test_failures_that_retries_absorb_publish_exactly_once(
        fault: str, method: str, path: str, proxy: FaultyProxy, s3_store: S3Store, direct_store: S3Store,
        ledger: Ledger, spec: JobSpec, adapter_dir: Path, eval_dir: Path) -> None:
    proxy.fail(fault, times=3, method=method, path=path)  # type: ignore[arg-type]
    assert publish(s3_store, ledger, spec, adapter_dir, eval_dir) == 1
    assert len(proxy.faults()) == 3
    manifest = verify_version(direct_store, "acme", "cats", "v1")
    assert manifest["files"]["pytorch_lora_weights.safetensors"] == file_digest(
        adapter_dir / "pytorch_lora_weights.safetensors")
    written = [p for p in proxy.writes() if p.endswith(f"/{MANIFEST}")]
    assert len(written) == 1  # one manifest reached S3, once
    assert [(v.version, v.status) for v in ledger.adapter_versions("acme", "cats", published_only=False)] == [
        (1, "published")]


def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize("down", ["always 500", "closed port"])
def test_s3_down_is_a_clear_error_and_publishes_nothing(
        down: str, proxy: FaultyProxy, bucket: str, direct_store: S3Store, ledger: Ledger, spec: JobSpec,
        adapter_dir: Path, eval_dir: Path) -> None:
    proxy.fail("500", times=None)
    store = S3Store(bucket, "platform", proxy.url if down == "always 500" else closed_port())
    with pytest.raises(PublishError) as error:
        publish(store, ledger, spec, adapter_dir, eval_dir)
    message = str(error.value)
    assert f"s3://{bucket}/platform/{PREFIX}" in message and "no reader sees it" in message
    assert "tried up to 5 times" in message and "Fix: check that the S3 endpoint answers" in message
    if down == "always 500":
        assert len(proxy.faults()) == 5  # botocore's standard mode: five attempts, then the error
    assert direct_store.list(PREFIX) == []
    [row] = ledger.adapter_versions("acme", "cats", published_only=False)
    assert row.status == "publishing" and ledger.adapter_versions("acme", "cats") == []


def test_a_publish_cut_off_halfway_leaves_no_manifest_and_its_retry_completes_the_version(
        proxy: FaultyProxy, s3_store: S3Store, direct_store: S3Store, ledger: Ledger, spec: JobSpec,
        adapter_dir: Path, eval_dir: Path) -> None:
    proxy.fail("500", times=None, method="PUT", skip=4)  # four files land, then every upload fails
    with pytest.raises(PublishError, match="was not published"):
        publish(s3_store, ledger, spec, adapter_dir, eval_dir)
    landed = direct_store.list(PREFIX)
    assert len(landed) == 4 and f"{PREFIX}/{MANIFEST}" not in landed
    assert ledger.adapter_versions("acme", "cats") == []
    proxy.heal()
    assert publish(s3_store, ledger, spec, adapter_dir, eval_dir) == 1  # the same version, completed
    assert len(verify_version(direct_store, "acme", "cats", "v1")["files"]) == 12
    assert [v.version for v in ledger.adapter_versions("acme", "cats", published_only=False)] == [1]


def test_a_large_file_goes_in_parts_and_a_failed_part_is_retried(
        proxy: FaultyProxy, bucket: str, s3_endpoint: str, tmp_path: Path) -> None:
    store = S3Store(bucket, "platform", proxy.url, upload_part_bytes=5 << 20)
    big = tmp_path / "big.safetensors"
    big.write_bytes(bytes(range(256)) * (11 << 12))  # 11 MiB: three parts of at most 5 MiB
    proxy.fail("500", method="PUT", path="partNumber=2")
    store.upload("big.safetensors", big)
    head = boto3.client("s3", endpoint_url=s3_endpoint).head_object(Bucket=bucket, Key="platform/big.safetensors")
    assert head["ETag"].strip('"').endswith("-3") and head["ContentLength"] == big.stat().st_size
    assert [s.outcome for s in proxy.faults()] == ["500"]
    assert store.read("big.safetensors") == big.read_bytes()
