"""Read-only access to a user's dataset, on local disk (``file://`` or a path) or in S3.

Sources are only ever listed and read: nothing here writes, moves or deletes user data.
Local symlinks and special files are reported, never followed (a link could point outside
the dataset), and S3 keys that would escape a folder once written to disk are flagged.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol
from urllib.parse import unquote, urlparse

from lora_tasks.errors import DatasetError


@dataclass(frozen=True)
class SourceObject:
    relpath: str
    """Posix path relative to the dataset root."""
    size: int
    problem: str | None = None
    """Why the object cannot be read as a regular file ('not_regular_file', 'unsafe_name', 'unreadable')."""


class DatasetSource(Protocol):
    uri: str
    local_root: Path | None
    """The dataset's folder on this machine; None for remote sources."""

    def list(self) -> list[SourceObject]: ...

    def open(self, relpath: str) -> Any:
        """A context manager yielding a binary stream of the object."""
        ...

    def local_path(self, relpath: str) -> Path | None:
        """Where the bytes already are on this machine, or None if they must be copied."""
        ...

    def uri_of(self, relpath: str) -> str: ...


def safe_relpath(relpath: str) -> bool:
    """True when the path stays inside its folder once joined to it."""
    parts = PurePosixPath(relpath).parts
    return bool(parts) and not relpath.startswith("/") and ".." not in parts and "" not in relpath.split("/")


class LocalSource:
    def __init__(self, root: Path) -> None:
        self.root = self.local_root = root
        self.uri = root.as_uri()

    def list(self) -> list[SourceObject]:
        if not self.root.is_dir():
            raise DatasetError(f"dataset {self.uri} does not exist or is not a folder. Fix: check dataset.uri")
        found: list[SourceObject] = []
        errors: list[OSError] = []
        for folder, dirs, files in os.walk(self.root, onerror=errors.append):
            dirs.sort()
            links = [d for d in dirs if Path(folder, d).is_symlink()]  # listed, never followed
            found += [self._describe(Path(folder, name)) for name in sorted(files) + links]
        for error in errors:
            path = Path(str(error.filename))
            if path == self.root:
                raise DatasetError(f"dataset folder {self.root} cannot be read ({error.strerror}). Fix: grant "
                                   "read access to the platform's user")
            found.append(SourceObject(path.relative_to(self.root).as_posix(), 0, "unreadable"))
        return sorted(found, key=lambda o: o.relpath)

    def _describe(self, path: Path) -> SourceObject:
        relpath = path.relative_to(self.root).as_posix()
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            return SourceObject(relpath, 0, "not_regular_file")
        return SourceObject(relpath, info.st_size)

    @contextmanager
    def open(self, relpath: str) -> Iterator[IO[bytes]]:
        with (self.root / relpath).open("rb") as stream:
            yield stream

    def local_path(self, relpath: str) -> Path | None:
        return self.root / relpath

    def uri_of(self, relpath: str) -> str:
        return (self.root / relpath).as_uri()


class S3Source:
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}"
        self.client = s3_client(endpoint_url)
        self.local_root: Path | None = None

    def list(self) -> list[SourceObject]:
        from botocore.exceptions import ClientError

        listing_prefix = f"{self.prefix}/" if self.prefix else ""
        found = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                               Prefix=listing_prefix):
                for item in page.get("Contents", []):
                    relpath = item["Key"][len(listing_prefix):]
                    if relpath.endswith("/"):  # a "folder" marker, not data
                        continue
                    problem = None if safe_relpath(relpath) else "unsafe_name"
                    found.append(SourceObject(relpath, item["Size"], problem))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchBucket", "404"}:
                raise DatasetError(f"dataset {self.uri}: bucket {self.bucket!r} does not exist. Fix: check "
                                   "dataset.uri") from None
            raise DatasetError(f"dataset {self.uri} cannot be listed ({code}: {exc}). Fix: check the "
                               "credentials and the bucket policy") from None
        if not found:
            raise DatasetError(f"dataset {self.uri} does not exist or holds no objects. Fix: check dataset.uri")
        return sorted(found, key=lambda o: o.relpath)

    @contextmanager
    def open(self, relpath: str) -> Iterator[IO[bytes]]:
        key = f"{self.prefix}/{relpath}" if self.prefix else relpath
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            yield body
        finally:
            body.close()

    def local_path(self, relpath: str) -> Path | None:
        return None

    def uri_of(self, relpath: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}/{relpath}" if self.prefix else f"s3://{self.bucket}/{relpath}"


def s3_client(endpoint_url: str | None) -> Any:
    """A boto3 S3 client with standard retries; the endpoint may be any S3-compatible server."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint_url,
                        config=Config(retries={"mode": "standard", "max_attempts": 5}))


def open_dataset(uri: str, endpoint_url: str | None = None) -> DatasetSource:
    """The source for a dataset URI: ``s3://bucket/prefix``, ``file:///path`` or a plain path."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise DatasetError(f"dataset URI {uri!r} names no bucket. Fix: write s3://BUCKET/PREFIX")
        return S3Source(parsed.netloc, parsed.path, endpoint_url)
    if parsed.scheme == "file":
        return LocalSource(Path(unquote(parsed.path)))
    if parsed.scheme and len(parsed.scheme) > 1:
        raise DatasetError(f"dataset URI {uri!r} uses an unsupported scheme {parsed.scheme!r}. Fix: use a "
                           "folder path, file:// or s3://")
    return LocalSource(Path(uri).expanduser().resolve())
