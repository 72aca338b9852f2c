"""Expand .zip, .tar and .tar.gz uploads without trusting anything inside them.

Refused: absolute names, '..', links (symbolic or hard) and device files, encrypted zip
members, too many members, too many bytes, and compression ratios no real image reaches
(zip bombs). Declared sizes are checked before anything is written, and the bytes actually
written are counted too, since headers can lie. A refused archive leaves nothing behind;
an accepted one appears all at once (expanded into a temporary folder, then renamed).
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lora_tasks.errors import LoraTaskError
from lora_tasks.stores.base import safe_relpath

COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int = 20_000
    max_total_bytes: int = 4 << 30
    max_ratio: float = 200.0
    """Uncompressed / compressed; JPEG and PNG compress by at most a few times."""


DEFAULT_LIMITS = ArchiveLimits()


class ArchiveRefused(LoraTaskError):
    """The archive breaks a safety rule; ``code`` is the machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


def expand_archive(archive: Path, kind: str, dest: Path, limits: ArchiveLimits | None = None) -> list[str]:
    """Expand ``archive`` (sniffed ``kind``: zip, tar or gz) into ``dest``; returns member paths."""
    limits = limits or DEFAULT_LIMITS
    partial = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        members = _expand_zip(archive, partial, limits) if kind == "zip" else _expand_tar(archive, partial, limits)
        shutil.rmtree(dest, ignore_errors=True)
        partial.rename(dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return members


def _check_name(name: str) -> str:
    clean = name.rstrip("/")
    if "\\" in clean or not safe_relpath(clean) or ":" in clean.split("/")[0]:
        raise ArchiveRefused("archive_unsafe_path", f"member {name!r} has an absolute or '..' path")
    return clean


def _expand_zip(archive: Path, dest: Path, limits: ArchiveLimits) -> list[str]:
    try:
        handle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveRefused("archive_corrupt", f"not a readable zip archive ({exc})") from None
    with handle:
        infos = [i for i in handle.infolist() if not i.is_dir()]
        _check_count(len(infos), limits)
        declared = 0
        for info in infos:
            _check_name(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ArchiveRefused("archive_link", f"member {info.filename!r} is a symbolic link")
            if info.flag_bits & 0x1:
                raise ArchiveRefused("archive_encrypted", f"member {info.filename!r} is encrypted")
            if info.compress_size and info.file_size / info.compress_size > limits.max_ratio:
                raise ArchiveRefused("archive_bomb", f"member {info.filename!r} expands {info.file_size} bytes "
                                     f"from {info.compress_size} (over {limits.max_ratio:.0f}x): a zip bomb")
            declared += info.file_size
        _check_total(declared, limits)
        written = 0
        try:
            for info in infos:
                with handle.open(info) as stream:
                    written += _copy(stream, dest / _check_name(info.filename), limits.max_total_bytes - written)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ArchiveRefused("archive_corrupt", f"a member cannot be extracted ({exc})") from None
        return sorted(_check_name(i.filename) for i in infos)


def _expand_tar(archive: Path, dest: Path, limits: ArchiveLimits) -> list[str]:
    compressed = archive.stat().st_size
    try:
        handle = tarfile.open(archive, mode="r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveRefused("archive_corrupt", f"not a readable tar archive ({exc})") from None
    members: list[str] = []
    declared = written = 0
    with handle:
        try:
            for info in handle:  # headers arrive one by one: stop before reading past a limit
                if info.isdir():
                    continue
                name = _check_name(info.name)
                if info.issym() or info.islnk():
                    raise ArchiveRefused("archive_link", f"member {info.name!r} is a link")
                if not info.isfile():
                    raise ArchiveRefused("archive_special_file", f"member {info.name!r} is a device or FIFO")
                members.append(name)
                _check_count(len(members), limits)
                declared += info.size
                _check_total(declared, limits)
                if compressed and declared / compressed > limits.max_ratio and declared > COPY_CHUNK:
                    raise ArchiveRefused("archive_bomb", f"expands past {limits.max_ratio:.0f}x its "
                                         f"{compressed} compressed bytes: a compression bomb")
                stream = handle.extractfile(info)
                if stream is not None:
                    written += _copy(stream, dest / name, limits.max_total_bytes - written)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ArchiveRefused("archive_corrupt", f"the tar stream is damaged ({exc})") from None
    return sorted(members)


def _check_count(count: int, limits: ArchiveLimits) -> None:
    if count > limits.max_members:
        raise ArchiveRefused("archive_too_many_members", f"holds over {limits.max_members} members")


def _check_total(total: int, limits: ArchiveLimits) -> None:
    if total > limits.max_total_bytes:
        raise ArchiveRefused("archive_too_large", f"expands to over {limits.max_total_bytes} bytes")


def _copy(stream: IO[bytes], target: Path, budget: int) -> int:
    """Copy a member, counting real bytes: stop as soon as the budget is spent."""
    target.parent.mkdir(parents=True, exist_ok=True)
    copied = 0
    with target.open("wb") as out:
        while chunk := stream.read(COPY_CHUNK):
            copied += len(chunk)
            if copied > budget:
                raise ArchiveRefused("archive_too_large", "expands to more bytes than its headers declare")
            out.write(chunk)
    return copied
