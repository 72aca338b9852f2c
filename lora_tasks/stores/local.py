"""A store in a local folder (a path or ``file://``): the default for datasets and artifacts.

Listing never follows a link (it could point outside the folder) and reports special files and
folders it cannot read instead of failing on them. Writes go to a hidden temporary file that is
renamed into place, so a reader never sees half an object; a write that must not replace anything
(a version's manifest) is linked into place instead, which fails if the name exists.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from pathlib import Path

from lora_tasks.errors import StoreError
from lora_tasks.stores.base import Store, StoreObject, checked, printable


class LocalStore(Store):
    def __init__(self, root: Path) -> None:
        self.root = self.local_root = root
        self.uri = root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / checked(key)

    def objects(self, prefix: str = "") -> list[StoreObject]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        found: list[StoreObject] = []
        errors: list[OSError] = []
        for folder, dirs, files in os.walk(base, onerror=errors.append):
            dirs.sort()
            links = [d for d in dirs if Path(folder, d).is_symlink()]  # listed, never followed
            found += [self._describe(Path(folder, name)) for name in sorted(files) + links]
        for error in errors:
            path = Path(str(error.filename))
            if path == base:
                raise StoreError(f"{base} cannot be read ({error.strerror}). Fix: grant read access to the "
                                 "platform's user")
            found.append(StoreObject(printable(path.relative_to(self.root).as_posix()), 0, "unreadable"))
        return sorted(found, key=lambda o: o.key)

    def _describe(self, path: Path) -> StoreObject:
        key = path.relative_to(self.root).as_posix()
        shown = printable(key)
        if shown != key:  # bytes that are not UTF-8: the name cannot be stored or shown as it is
            return StoreObject(shown, 0, "undecodable_name")
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            return StoreObject(key, 0, "not_regular_file")
        return StoreObject(key, info.st_size)

    def _atomic(self, key: str) -> tuple[Path, Path]:
        """The object's path and a temporary name beside it (renamed into place when complete), unique to
        this call so that concurrent writers of one key never share it."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"{self.uri_of(key)} does not exist") from None

    def write(self, key: str, data: bytes) -> None:
        path, tmp = self._atomic(key)
        tmp.write_bytes(data)
        tmp.replace(path)

    def write_if_absent(self, key: str, data: bytes) -> bool:
        """A hard link to a complete temporary file: ``link`` fails if the name exists, so of two writers
        exactly one wins, and a reader never sees the object half written."""
        path, tmp = self._atomic(key)
        tmp.write_bytes(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        return True

    def upload(self, key: str, local: Path) -> None:
        path, tmp = self._atomic(key)
        shutil.copyfile(local, tmp)
        tmp.replace(path)

    def download(self, key: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(f".{local.name}.partial")
        shutil.copyfile(self._path(key), partial)
        partial.replace(local)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri_of(self, key: str) -> str:
        return (self.root / key).as_uri()

    def local_path(self, key: str) -> Path | None:
        return self.root / key
