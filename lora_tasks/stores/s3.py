"""A store under an ``s3://bucket/prefix`` on AWS or any S3-compatible server (MinIO, Ceph, moto).

Files move with boto3's managed transfers (``upload_file``/``download_file``: multipart and
threaded for large objects, written to a temporary name and renamed), and every call retries with
botocore's own ``standard`` mode (5xx, throttling, dropped connections). S3 shows an object only once
its upload (every part of it) is complete. A write that must not replace anything (a version's
manifest) is a conditional ``PutObject`` (``If-None-Match: *``). A key that would escape its folder
once written to disk (``..``, an empty segment) is listed with a problem and never downloaded.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lora_tasks.errors import StoreError
from lora_tasks.stores.base import Store, StoreObject, checked, safe_relpath

MAX_ATTEMPTS = 5
MULTIPART_BYTES = 64 << 20
"""Downloads above this move in parts, several at a time."""
UPLOAD_PART_BYTES = 16 << 20
"""Uploads above this go in parts of this size, several at a time (S3's smallest part is 5 MiB); a
failed part is retried alone."""
UPLOAD_THREADS = 8


def s3_client(endpoint_url: str | None) -> Any:
    """A boto3 S3 client with botocore's standard retries; the endpoint may be any S3-compatible server."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint_url,
                        config=Config(retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS}))


def transfer_config(part_bytes: int = MULTIPART_BYTES, threads: int = 4) -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=part_bytes, multipart_chunksize=part_bytes, max_concurrency=threads)


def store_fix(exc: Exception) -> str:
    """What to do about a request S3 refused, or that never reached it, after botocore's retries."""
    from botocore.exceptions import ClientError

    error = exc.__context__ if isinstance(exc.__context__, ClientError) else exc  # upload_file wraps it
    code = error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""
    if code in {"AccessDenied", "403"}:
        return "grant the platform s3:PutObject on the bucket"
    if code == "NoSuchBucket":
        return "create the bucket, or point the artifact root (LORA_ARTIFACT_ROOT) at one that exists"
    return ("check that the S3 endpoint answers (LORA_S3_ENDPOINT_URL, AWS_ENDPOINT_URL) and accepts these "
            "credentials, then retry the task")


def content_type(key: str) -> dict[str, str]:
    """So that a browser or the hub shows a card, a report or a sample as what it is."""
    guessed = mimetypes.guess_type(key)[0]
    return {"ContentType": guessed} if guessed else {}


class S3Store(Store):
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None,
                 upload_part_bytes: int = UPLOAD_PART_BYTES) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = s3_client(endpoint_url)
        self.transfer = transfer_config()
        self.upload_transfer = transfer_config(upload_part_bytes, UPLOAD_THREADS)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{checked(key)}" if self.prefix else checked(key)

    def objects(self, prefix: str = "") -> list[StoreObject]:
        from botocore.exceptions import ClientError

        listing = "/".join(p for p in (self.prefix, prefix.strip("/")) if p)
        listing = f"{listing}/" if listing else ""
        start = len(self.prefix) + 1 if self.prefix else 0
        found = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=listing):
                for item in page.get("Contents", []):
                    key = item["Key"][start:]
                    if key.endswith("/") and not item["Size"]:  # a "folder" marker, not data
                        continue
                    found.append(StoreObject(key, item["Size"], None if safe_relpath(key) else "unsafe_name"))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchBucket", "404"}:
                raise StoreError(f"{self.uri}: bucket {self.bucket!r} does not exist. Fix: check the URI") from None
            raise StoreError(f"{self.uri} cannot be listed ({code}: {exc}). Fix: check the credentials and the "
                             "bucket policy") from None
        return sorted(found, key=lambda o: o.key)

    def read(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            raise StoreError(f"{self.uri_of(key)} cannot be read ({exc})") from None

    @contextmanager
    def _writing(self, key: str) -> Iterator[None]:
        """A write that failed after botocore's retries, as a StoreError naming the object and the fix."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            raise StoreError(f"{self.uri_of(key)} could not be written ({exc}; tried up to {MAX_ATTEMPTS} times). "
                             f"Fix: {store_fix(exc)}") from exc

    def write(self, key: str, data: bytes) -> None:
        with self._writing(key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **content_type(key))

    def write_if_absent(self, key: str, data: bytes) -> bool:
        """A conditional PutObject: S3 refuses it (412) once the key exists. A 412 also answers a retry of a
        write whose first attempt landed but whose reply was lost; the caller reads the object to tell."""
        from botocore.exceptions import ClientError
        from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

        def conflict(exc: BaseException) -> bool:  # AWS: another conditional write of this key was in flight
            return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == \
                "ConditionalRequestConflict"

        put = retry(retry=retry_if_exception(conflict), stop=stop_after_attempt(MAX_ATTEMPTS),
                    wait=wait_exponential(0.2, max=5), reraise=True)(self.client.put_object)
        with self._writing(key):
            try:
                put(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*", **content_type(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                    return False
                raise
        return True

    def upload(self, key: str, local: Path) -> None:
        with self._writing(key):
            self.client.upload_file(str(local), self.bucket, self._key(key), Config=self.upload_transfer,
                                    ExtraArgs=content_type(key))

    def download(self, key: str, local: Path) -> None:
        """One GET for an object under the multipart size (most dataset files: a managed transfer costs
        several times more per object), a managed, multipart transfer above it. A body cut off while
        streaming is fetched again (botocore retries requests, not the reading of a response)."""
        from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError
        from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

        cut_off = (IncompleteReadError, ReadTimeoutError, ResponseStreamingError)
        retry(retry=retry_if_exception_type(cut_off), stop=stop_after_attempt(MAX_ATTEMPTS),
              wait=wait_exponential(0.2, max=5), reraise=True)(self._download)(key, local)

    def _download(self, key: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        if response["ContentLength"] > MULTIPART_BYTES:
            response["Body"].close()
            self.client.download_file(self.bucket, self._key(key), str(local), Config=self.transfer)
            return
        partial = local.with_name(f".{local.name}.partial")
        body = response["Body"]
        try:
            with partial.open("wb") as out:
                for chunk in body.iter_chunks(1 << 20):
                    out.write(chunk)
        finally:
            body.close()
        partial.replace(local)

    def exists(self, key: str) -> bool:
        """Only a 404 means absent: any other error is raised, since publishing acts on the answer (a
        denied HEAD read as "absent" would let it upload over an immutable version). S3 answers 403 for a
        missing key to a caller without s3:ListBucket, which the platform needs anyway (the batch inbox)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except (BotoCoreError, ClientError) as exc:
            code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
            if code in {"404", "NoSuchKey", "NotFound"}:
                return False
            fix = (f"grant the platform s3:GetObject and s3:ListBucket on {self.bucket!r}" if code == "403"
                   else store_fix(exc))
            raise StoreError(f"{self.uri_of(key)} cannot be checked ({exc}; tried up to {MAX_ATTEMPTS} times). "
                             f"Fix: {fix}") from None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def uri_of(self, key: str) -> str:
        return f"{self.uri}/{key}"
