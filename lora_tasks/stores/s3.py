"""A store under an ``s3://bucket/prefix`` on AWS or any S3-compatible server (MinIO, Ceph, moto).

Files move with boto3's managed transfers (``upload_file``/``download_file``: multipart and
threaded for large objects, written to a temporary name and renamed), and every call retries with
botocore's own ``standard`` mode. A key that would escape its folder once written to disk
(``..``, an empty segment) is listed with a problem and never downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_tasks.errors import StoreError
from lora_tasks.stores.base import Store, StoreObject, checked, safe_relpath

MAX_ATTEMPTS = 5
MULTIPART_BYTES = 64 << 20
"""Objects above this move in parts, several at a time."""


def s3_client(endpoint_url: str | None) -> Any:
    """A boto3 S3 client with botocore's standard retries; the endpoint may be any S3-compatible server."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint_url,
                        config=Config(retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS}))


def transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES,
                          max_concurrency=4)


class S3Store(Store):
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = s3_client(endpoint_url)
        self.transfer = transfer_config()

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

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def upload(self, key: str, local: Path) -> None:
        self.client.upload_file(str(local), self.bucket, self._key(key), Config=self.transfer)

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
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise StoreError(f"{self.uri_of(key)} cannot be checked ({exc}). Fix: grant the platform s3:GetObject and "
                             f"s3:ListBucket on {self.bucket!r}") from None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def uri_of(self, key: str) -> str:
        return f"{self.uri}/{key}"
