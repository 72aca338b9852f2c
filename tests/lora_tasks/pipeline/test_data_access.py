"""What a run may read: each trick for reading another tenant's data is refused in validate_request."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from lora_tasks.errors import DatasetError, JobSpecError, LoraTaskError
from lora_tasks.settings import platform_settings
from tests.conftest import UPLOADS
from tests.lora_tasks.pipeline.test_validate import job, validate

OUTSIDE = "is outside what tenant 'acme' may read"


def acme(model: Path, dataset: str | Path, **changes: object) -> dict:
    return {"job_spec": job(model, Path(dataset) if "://" not in str(dataset) else dataset, job__tenant="acme",
                            **changes)}


def test_a_tenant_reads_its_own_upload_resolved(tiny_model: Path, acme_dataset: Path) -> None:
    info = validate(acme(tiny_model, f"file://{acme_dataset}"), user=None)
    assert yaml.safe_load(Path(info["spec"]).read_text())["dataset"]["uri"] == str(acme_dataset)


@pytest.mark.parametrize("trick", ["other-tenant", "dotdot", "file-uri", "sibling-prefix"])
def test_paths_into_another_tenants_upload_are_refused(tiny_model: Path, style_dataset: Path, acme_dataset: Path,
                                                        trick: str) -> None:
    sibling = UPLOADS / "acme-old" / "sks"
    shutil.copytree(style_dataset, sibling, dirs_exist_ok=True)
    dataset = {"other-tenant": str(style_dataset),
               "dotdot": f"{UPLOADS}/acme/../demo/sks",
               "file-uri": f"file://{style_dataset}",
               "sibling-prefix": str(sibling)}[trick]  # uploads/acme-old starts with uploads/acme, but is not in it
    with pytest.raises(LoraTaskError, match=OUTSIDE):
        validate(acme(tiny_model, dataset), user=None)


def test_a_symlink_inside_the_own_upload_to_another_tenants_is_refused(tiny_model: Path, style_dataset: Path,
                                                                        acme_dataset: Path) -> None:
    link = UPLOADS / "acme" / "innocent"
    link.unlink(missing_ok=True)
    link.symlink_to(style_dataset)
    with pytest.raises(LoraTaskError, match=rf"resolved: {style_dataset}\) {OUTSIDE}"):
        validate(acme(tiny_model, link), user=None)


def test_another_tenants_published_adapters_are_refused_even_under_a_broad_root(
        tiny_model: Path, style_dataset: Path, tmp_path: Path) -> None:
    artifacts = Path(platform_settings().artifact_root)
    published = artifacts / "tenants" / "demo" / "loras" / "x"
    shutil.copytree(style_dataset, published, dirs_exist_ok=True)
    careless = tmp_path / "tenants.yaml"  # an operator gave acme the whole disk
    careless.write_text(yaml.safe_dump({"tenants": {"acme": {"roles": ["admin"], "read": ["/"]}}}))
    with pytest.raises(LoraTaskError, match="inside the artifact store"):
        validate(acme(tiny_model, published), user=None, tenants_file=careless)


def test_a_base_model_outside_the_shared_and_tenant_roots_is_refused(tiny_model: Path, acme_dataset: Path,
                                                                      tmp_path: Path) -> None:
    private = shutil.copytree(tiny_model, tmp_path / "someone-elses-model")
    with pytest.raises(LoraTaskError, match=r"model_config\.base_model .* is outside what tenant 'acme' may read"):
        validate(acme(private, acme_dataset), user=None)


@pytest.mark.parametrize(
    ("uri", "error", "message"),
    [
        ("s3://lora-uploads/demo/sks", LoraTaskError, OUTSIDE),
        ("s3://lora-uploads/acme2/sks", LoraTaskError, OUTSIDE),
        ("s3://other-bucket/acme/sks", LoraTaskError, OUTSIDE),
        ("s3://lora-uploads/acme/../demo/sks", LoraTaskError, "has a '.' or '..' segment"),
        ("s3://lora-uploads/acme/empty", DatasetError, "holds no objects"),
        ("gs://lora-uploads/acme/sks", LoraTaskError, "unsupported scheme 'gs'"),
    ],
)
def test_s3_prefixes_are_checked_by_segment_and_for_content(tiny_model: Path, s3_bucket: str, uri: str,
                                                            error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        validate(acme(tiny_model, uri), user=None, s3_endpoint_url=s3_bucket)


def test_an_s3_upload_of_the_tenant_is_accepted(tiny_model: Path, s3_bucket: str) -> None:
    info = validate(acme(tiny_model, "s3://lora-uploads/acme/sks/"), user=None, s3_endpoint_url=s3_bucket)
    assert info["dataset_uri"] == "s3://lora-uploads/acme/sks/"


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """The bucket ``lora-uploads`` holding one acme upload (and a demo one)."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="lora-uploads")
    for key in ("acme/sks/a.png", "demo/sks/a.png", "acme2/sks/a.png"):
        client.put_object(Bucket="lora-uploads", Key=key, Body=b"not really an image")
    return s3_endpoint


def test_a_missing_dataset_is_refused_before_the_scan(tiny_model: Path) -> None:
    with pytest.raises(DatasetError, match=r"dataset\.uri .*/acme/typo' does not exist"):
        validate(acme(tiny_model, UPLOADS / "acme" / "typo"), user=None)


def test_unknown_conf_keys_are_refused_with_a_suggestion(tiny_model: Path, acme_dataset: Path) -> None:
    with pytest.raises(JobSpecError, match=r"conf\.lora_rnak: unknown key; did you mean 'lora_rank'\?"):
        validate({**acme(tiny_model, acme_dataset), "lora_rnak": 4}, user=None)
