"""The artifact store: published adapters and batch requests, under ``file://`` or ``s3://``.

Keys are posix paths below the store's root (``tenants/acme/loras/cats/v1/manifest.json``).
Local writes are atomic (temporary file, then rename); S3 puts are atomic per object.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from lora_tasks.errors import LoraTaskError
from lora_tasks.stores.sources import s3_client, safe_relpath


class ArtifactStore(Protocol):
    uri: str

    def write(self, key: str, data: bytes) -> None: ...

    def upload(self, key: str, local: Path) -> None: ...

    def read(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]: ...

    def delete(self, key: str) -> None: ...


def _checked(key: str) -> str:
    if not safe_relpath(key):
        raise LoraTaskError(f"artifact key {key!r} could escape the store's root")
    return key


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / _checked(key)

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def upload(self, key: str, local: Path) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        shutil.copyfile(local, tmp)
        tmp.replace(path)

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise LoraTaskError(f"{self.uri}/{key} does not exist") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3Store:
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = s3_client(endpoint_url)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{_checked(key)}" if self.prefix else _checked(key)

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def upload(self, key: str, local: Path) -> None:
        self.client.upload_file(str(local), self.bucket, self._key(key))

    def read(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            raise LoraTaskError(f"{self.uri}/{key} cannot be read ({exc})") from None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError:
            return False

    def list(self, prefix: str) -> list[str]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            keys += [item["Key"] for item in page.get("Contents", [])]
        start = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[start:] for k in keys if not k.endswith("/"))

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def open_store(uri: str, endpoint_url: str | None = None) -> ArtifactStore:
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return S3Store(parsed.netloc, parsed.path, endpoint_url)
    if parsed.scheme == "file":
        return LocalStore(Path(unquote(parsed.path)))
    if not parsed.scheme:
        return LocalStore(Path(uri).expanduser().resolve())
    raise LoraTaskError(f"artifact store {uri!r}: unsupported scheme. Fix: use a folder, file:// or s3://")
