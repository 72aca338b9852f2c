"""What a run may read: its dataset and base model, checked in validate_request before any byte is read.

A tenant's run reads only inside its tenant's read roots (base models also inside the platform's
shared roots), never inside the platform's own storage (the artifact store, where other tenants'
adapters live, and the workspace), and only what exists and can be read: a missing dataset is
refused here, not minutes later by the scan.
"""

from __future__ import annotations

import os
from pathlib import Path

from lora_tasks.errors import DatasetError, LoraTaskError
from lora_tasks.pipeline.tenancy import Tenants, check_readable
from lora_tasks.settings import PlatformSettings
from lora_tasks.stores.locations import Location, parse_location


def check_dataset_location(uri: str, tenant: str, tenants: Tenants, settings: PlatformSettings) -> Location:
    """The dataset's canonical location, once it is known to be the tenant's to read and readable."""
    location = parse_location(uri, "dataset.uri")
    if location.scheme == "s3" and any(part in {".", ".."} for part in location.path.split("/")):
        # some S3 tools fold them and others do not: the prefix checked might not be the one read
        raise LoraTaskError(f"dataset.uri: {uri!r} has a '.' or '..' segment. Fix: write the prefix without them")
    refuse_platform_storage(location, "dataset.uri", settings)
    check_readable(tenants, tenant, location, "dataset.uri")
    if location.scheme == "s3":
        check_s3_prefix(location, settings.s3_endpoint_url)
    else:
        check_local_path(Path(location.path), uri)
    return location


def check_model_location(path: str, tenant: str, tenants: Tenants, settings: PlatformSettings, key: str) -> None:
    """Refuse a local base model (or its config folder) outside the tenant's and the shared read roots."""
    location = parse_location(path, key)
    refuse_platform_storage(location, key, settings)
    check_readable(tenants, tenant, location, key, shared=True)


def refuse_platform_storage(location: Location, key: str, settings: PlatformSettings) -> None:
    for name, root in (("the artifact store", settings.artifact_root), ("the workspace", str(settings.workspace))):
        if location.is_within(parse_location(root, name)):
            raise LoraTaskError(f"{key} {location.given!r} is inside {name} ({root}), which holds every tenant's "
                                "runs and adapters and is no upload. Fix: point it at your upload folder")


def check_local_path(path: Path, given: str) -> None:
    if not path.exists():
        raise DatasetError(f"dataset.uri {given!r} does not exist (looked for {path}). Fix: upload the dataset "
                           "there first, or correct the path")
    mode = os.R_OK | (os.X_OK if path.is_dir() else 0)
    if not os.access(path, mode):
        raise DatasetError(f"dataset.uri {given!r} cannot be read by the platform (permissions of {path}). Fix: make "
                           "it readable to the Airflow workers")


def check_s3_prefix(location: Location, endpoint_url: str | None) -> None:
    """At least one object under the prefix, read with the workers' own credentials."""
    from botocore.exceptions import BotoCoreError, ClientError

    from lora_tasks.stores.s3 import s3_client

    prefix = f"{location.path}/" if location.path else ""
    try:
        listing = s3_client(endpoint_url).list_objects_v2(Bucket=location.bucket, Prefix=prefix, MaxKeys=1)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise DatasetError(f"dataset.uri {location.given!r} cannot be listed ({code}). Fix: check the bucket name "
                           "and that the workers' credentials may list it") from None
    except BotoCoreError as exc:
        raise DatasetError(f"dataset.uri {location.given!r}: the object store did not answer ({exc}). Fix: check "
                           "LORA_S3_ENDPOINT_URL") from None
    if not listing.get("KeyCount"):
        raise DatasetError(f"dataset.uri {location.given!r} holds no objects. Fix: upload the dataset under that "
                           "prefix first, or correct it")
