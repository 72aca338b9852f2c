"""A dataset archive sent with a job (``POST /lora/v1/jobs`` as multipart): counted while it streams in,
refused before it is stored (over the size limit, an unsafe member name, a compression bomb: the rules
intake expands archives by), then stored under the caller's own upload prefix, the first of its tenant's
``read`` roots, where no other tenant's runs may read."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from lora_tasks.errors import StoreError
from lora_tasks.intake.archives import ArchiveRefused, inspect_archive
from lora_tasks.intake.sniff import ARCHIVE_TYPES, sniff
from lora_tasks.pipeline.pods import readable_from_pods
from lora_tasks.pipeline.tenancy import Tenants
from lora_tasks.settings import PlatformSettings
from lora_tasks.stores import open_store
from lora_tasks.stores.locations import Location
from lora_tasks.tenants.jobs import Refused

FOLDER = "api-uploads"
"""Under the tenant's upload prefix: one folder per upload, named by a fresh id, holding the archive."""
SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


@dataclass(frozen=True)
class StoredUpload:
    uri: str
    """The folder holding the archive: the job's ``dataset.uri``."""
    store: Any
    key: str

    def discard(self) -> None:
        """Remove it again: the job it came with was not taken (refused, or Airflow did not answer)."""
        self.store.delete(self.key)
        folder = self.store.local_path(str(PurePosixPath(self.key).parent))
        if folder is not None:
            with contextlib.suppress(OSError):
                folder.rmdir()


UPLOAD_FIX = "send a smaller archive, or upload the dataset under your upload prefix and give dataset_uri"


def refuse_declared_size(headers: Any, limit: int, fix: str = UPLOAD_FIX) -> None:
    """413 before one byte is read when the request says it is larger than ``limit``."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"the request declares {int(declared):,} bytes; the limit is {limit:,}. Fix: {fix}")


def counted(receive: Receive, limit: int, fix: str = UPLOAD_FIX) -> Receive:
    """``receive`` that stops the request (413) once its body passes ``limit`` bytes, whatever it declared."""
    seen = 0

    async def receive_counted() -> MutableMapping[str, Any]:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise Refused(413, f"the request body passed {limit:,} bytes, the limit. Fix: {fix}")
        return message

    return receive_counted


def store_upload(stream: IO[bytes], filename: str | None, root: Location, s3_endpoint_url: str | None) -> StoredUpload:
    """Check the archive, then store it under ``root`` (the tenant's ``upload_root``); nothing is stored if it
    is refused."""
    name = _checked_filename(filename)
    with tempfile.TemporaryDirectory(prefix="lora-upload-") as folder:
        local = Path(folder) / "archive"
        with local.open("wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        with local.open("rb") as head:
            kind = sniff(head.read(1024))[0]
        if kind not in ARCHIVE_TYPES:
            raise Refused(422, f"dataset: {name!r} is not a zip or tar archive. Fix: send a .zip, .tar or .tar.gz")
        try:
            inspect_archive(local, kind)
        except ArchiveRefused as exc:
            raise Refused(422, f"dataset: {name!r} was refused, nothing was stored: {exc}. Fix: rebuild the archive "
                               "with plain relative names and only the dataset's files") from None
        store = open_store(str(root), s3_endpoint_url)
        key = f"{FOLDER}/{uuid.uuid4().hex}/{name}"
        try:
            store.upload(key, local)
        except (OSError, StoreError) as exc:
            raise Refused(503, f"the upload could not be stored ({exc}). Fix: retry later") from None
    return StoredUpload(store.uri_of(str(PurePosixPath(key).parent)), store, key)


def upload_root(tenant: str, tenants: Tenants, settings: PlatformSettings) -> Location:
    """The first of the tenant's read roots that its jobs can train from: with the Kubernetes runner, one a
    training pod reaches (the object store or the shared data volume); a job on any other would be refused."""
    roots = tenants[tenant].read
    if settings.runner == "kubernetes":
        roots = tuple(root for root in roots if readable_from_pods(str(root), settings))
    if not roots:
        reach = " that training pods can read (s3://..., or under LORA_SHARED_DATA)" \
            if settings.runner == "kubernetes" else ""
        raise Refused(422, f"dataset: tenant {tenant!r} has no upload prefix{reach}. Fix: ask an operator to add "
                           "one to its read roots in tenants.yaml")
    return roots[0]


def _checked_filename(filename: str | None) -> str:
    """The archive's own name, refused unless it is one plain name with an archive suffix."""
    if not filename:
        raise Refused(422, "dataset: the file part has no filename. Fix: send it as a file (curl -F "
                           "dataset=@photos.zip)")
    if "/" in filename or "\\" in filename or filename in {".", ".."} or not filename.isprintable():
        raise Refused(422, f"dataset: the filename {filename!r} is not a plain file name. Fix: name the archive "
                           "without folders or '..' (photos.zip)")
    if not filename.lower().endswith(SUFFIXES):
        raise Refused(422, f"dataset: {filename!r} is not a .zip, .tar, .tar.gz or .tgz. Fix: pack the dataset "
                           "into one of those")
    return filename
