"""What every store is: objects under keys below a root URI, listed without being followed, read,
written whole (never half), and kept inside the root whatever a key says."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lora_tasks.errors import StoreError


@dataclass(frozen=True)
class StoreObject:
    key: str
    """Posix path relative to the store's root."""
    size: int
    problem: str | None = None
    """Why it cannot be read as a regular file: 'not_regular_file', 'unsafe_name', 'undecodable_name' or
    'unreadable'."""


def safe_relpath(relpath: str) -> bool:
    """True when the path stays inside its folder once joined to it."""
    parts = PurePosixPath(relpath).parts
    return bool(parts) and not relpath.startswith("/") and ".." not in parts and "" not in relpath.split("/")


def printable(name: str) -> str:
    """A name as it can be shown and stored: bytes that were not UTF-8 (decoded as surrogates) become ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def checked(key: str) -> str:
    if not safe_relpath(key):
        raise StoreError(f"key {key!r} could escape the store's root")
    return key


class Store(ABC):
    """A ``file://`` or ``s3://`` root. Writes are atomic: a reader sees an object whole or not at all."""

    uri: str
    local_root: Path | None = None
    """The root's folder on this machine; None for a remote store."""

    @abstractmethod
    def objects(self, prefix: str = "") -> list[StoreObject]:
        """Everything under ``prefix``, sorted by key; links and special files flagged, not followed."""

    def list(self, prefix: str = "") -> list[str]:
        """Keys of the readable objects under ``prefix``."""
        return [o.key for o in self.objects(prefix) if o.problem is None]

    @abstractmethod
    def read(self, key: str) -> bytes: ...

    @abstractmethod
    def write(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def write_if_absent(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if no object has it, atomically against concurrent writers; False when one
        already did (the writer of a published version's manifest is the one that wins)."""

    @abstractmethod
    def upload(self, key: str, local: Path) -> None: ...

    @abstractmethod
    def download(self, key: str, local: Path) -> None:
        """Copy the object to ``local``, which appears only once complete."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def uri_of(self, key: str) -> str: ...

    def local_path(self, key: str) -> Path | None:
        """Where the object's bytes already are on this machine, or None if they must be downloaded."""
        return None
