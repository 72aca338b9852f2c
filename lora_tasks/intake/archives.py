"""Expand .zip, .tar and .tar.gz uploads without trusting anything inside them.

Refused: absolute names, '..', links (symbolic or hard) and device files, encrypted zip
members, members that compress past any real image (zip bombs), and, for the archive as a
whole, too many members, too many bytes, a tar stream that compresses past the same ratio,
and damage. Declared sizes are checked before anything is written, and the bytes actually
written are counted too, since headers can lie.

Each member is written to a numbered file (``000001``...), never to its own name: a member
named like a folder of another (``x`` and ``x/y``) or two members of one name cannot clash,
and a name can never point outside the folder. A second member of the same name is refused
(the first is used). What one unsafe member costs is the archive's policy: ``reject_archive``
(the default, the safe choice) refuses the whole archive, ``keep_safe_members`` keeps the
others. Either way every member comes back with its fate, so the user sees what was lost. A
refused archive leaves nothing behind; an accepted one appears all at once (expanded into a
temporary folder, then renamed).
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from lora_tasks.errors import LoraTaskError
from lora_tasks.stores.base import printable, safe_relpath

COPY_CHUNK = 1 << 20
ArchivePolicy = Literal["reject_archive", "keep_safe_members"]


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int = 20_000
    max_total_bytes: int = 4 << 30
    max_ratio: float = 200.0
    """Uncompressed / compressed; JPEG and PNG compress by at most a few times."""


DEFAULT_LIMITS = ArchiveLimits()


@dataclass(frozen=True)
class Member:
    """One member and its fate: ``file`` (under the expansion folder) when extracted, else the problem."""

    name: str
    file: str | None = None
    problem: str | None = None
    detail: str | None = None


class ArchiveRefused(LoraTaskError):
    """The archive as a whole is refused; ``code`` is the machine-readable reason, ``members`` the
    members known when it was (each with its own problem, or none: lost with the archive)."""

    def __init__(self, code: str, message: str, members: list[Member] | None = None) -> None:
        self.code, self.members = code, members or []
        super().__init__(message)


class _Unsafe(Exception):
    """One member breaks a rule; the policy decides whether the archive goes with it."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


def expand_archive(archive: Path, kind: str, dest: Path, limits: ArchiveLimits | None = None,
                   policy: ArchivePolicy = "reject_archive") -> list[Member]:
    """Expand ``archive`` (sniffed ``kind``: zip, tar or gz) into ``dest``; every member, sorted by name."""
    limits = limits or DEFAULT_LIMITS
    partial = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        expansion = _Expansion(partial, limits)
        if kind == "zip":
            expansion.zip(archive)
        else:
            expansion.tar(archive)
        members = sorted(expansion.members, key=lambda m: m.name)
        unsafe = [m for m in members if m.problem and m.problem != "archive_duplicate_member"]
        if unsafe and policy == "reject_archive":
            first = unsafe[0]
            raise ArchiveRefused(first.problem or "", f"{first.detail} (one unsafe member refuses the archive; "
                                 "dataset.archives: keep_safe_members keeps the others)", members)
        shutil.rmtree(dest, ignore_errors=True)
        partial.rename(dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return members


def inspect_archive(archive: Path, kind: str, limits: ArchiveLimits | None = None) -> list[Member]:
    """Read ``archive`` as ``expand_archive`` would, counting real bytes but writing nothing, and refuse it
    (ArchiveRefused) for any unsafe member: lets the tenant API refuse an upload before it is stored."""
    expansion = _Expansion(None, limits or DEFAULT_LIMITS)
    if kind == "zip":
        expansion.zip(archive)
    else:
        expansion.tar(archive)
    unsafe = [m for m in expansion.members if m.problem and m.problem != "archive_duplicate_member"]
    if unsafe:
        raise ArchiveRefused(unsafe[0].problem or "", unsafe[0].detail or "", expansion.members)
    return sorted(expansion.members, key=lambda m: m.name)


def _check_name(name: str) -> str:
    clean = name.rstrip("/")
    if clean != printable(clean):
        raise _Unsafe("archive_unsafe_path", f"member {printable(name)!r} has a name that is not valid UTF-8")
    if "\\" in clean or not safe_relpath(clean) or ":" in clean.split("/")[0]:
        raise _Unsafe("archive_unsafe_path", f"member {name!r} has an absolute or '..' path")
    return clean



def _reason(exc: BaseException) -> str:
    """An error's own words on one line, without the platform's paths (OSError names the file)."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(text.split()) or type(exc).__name__


class _Expansion:
    """The members found so far, and the bytes written, while one archive is read."""

    def __init__(self, folder: Path | None, limits: ArchiveLimits) -> None:
        self.folder, self.limits = folder, limits
        """None: members are read and counted, not written."""
        self.members: list[Member] = []
        self.names: dict[str, int] = {}
        self.current: str | None = None
        """A member accepted by ``note`` but not yet extracted: lost too if the archive is refused now."""
        self.declared = self.written = 0

    def refuse(self, code: str, message: str) -> ArchiveRefused:
        pending = [Member(self.current)] if self.current else []
        return ArchiveRefused(code, message, self.members + pending)

    def note(self, name: str, checks: list[tuple[bool, str, str]]) -> str | None:
        """The member's clean name if it may be extracted; otherwise it is recorded with its problem. A
        second member of one name is refused whatever else is wrong with it, so every row keeps one path."""
        shown = printable(name.rstrip("/"))
        if shown in self.names:
            self.names[shown] += 1
            copy = self.names[shown]
            label = f"{shown} (copy {copy})"
            self.names.setdefault(label, 1)  # a later member really named so is then a duplicate, not a clash
            self.members.append(Member(label, problem="archive_duplicate_member",
                                       detail=f"member {copy} named {shown!r} in one archive; the first one was used"))
            return None
        self.names[shown] = 1
        try:
            clean = _check_name(name)
            for failed, code, message in checks:
                if failed:
                    raise _Unsafe(code, message)
        except _Unsafe as problem:
            self.members.append(Member(shown, problem=problem.code, detail=str(problem)))
            return None
        if len(self.members) >= self.limits.max_members:
            raise self.refuse("archive_too_many_members", f"holds over {self.limits.max_members} members")
        self.current = clean
        return clean

    def declare(self, size: int) -> None:
        self.declared += size
        if self.declared > self.limits.max_total_bytes:
            raise self.refuse("archive_too_large", f"expands to over {self.limits.max_total_bytes} bytes")

    def extract(self, name: str, stream: IO[bytes]) -> None:
        file = f"{len(self.members) + 1:06d}"
        target = self.folder / file if self.folder else None
        self.written += self._copy(stream, target, self.limits.max_total_bytes - self.written)
        self.members.append(Member(name, file=file))
        self.current = None

    def _copy(self, stream: IO[bytes], target: Path | None, budget: int) -> int:
        """Copy a member (to nowhere without a target), counting real bytes: stop as soon as the budget is spent."""
        copied = 0
        with (target or Path(os.devnull)).open("wb") as out:
            while chunk := stream.read(COPY_CHUNK):
                copied += len(chunk)
                if copied > budget:
                    raise self.refuse("archive_too_large", "expands to more bytes than its headers declare")
                out.write(chunk)
        return copied

    def zip(self, archive: Path) -> None:
        try:
            handle = zipfile.ZipFile(archive)
        except Exception as exc:  # zipfile raises many types for a damaged directory (UnicodeDecodeError...)
            raise self.refuse("archive_corrupt", f"not a readable zip archive ({_reason(exc)})") from None
        with handle:
            infos = [i for i in handle.infolist() if not i.is_dir()]
            try:
                self._zip_members(handle, infos)
            except ArchiveRefused as exc:  # the central directory names every member: list them all as lost
                listed = {m.name for m in exc.members}
                for name in (printable(i.filename.rstrip("/")) for i in infos):
                    if name not in listed:
                        exc.members.append(Member(name))
                        listed.add(name)
                raise

    def _zip_members(self, handle: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
        if len(infos) > self.limits.max_members:
            raise self.refuse("archive_too_many_members", f"holds over {self.limits.max_members} members")
        chosen = []
        for info in infos:
            ratio = info.file_size / info.compress_size if info.compress_size else 0.0
            name = self.note(info.filename, [
                (stat.S_ISLNK(info.external_attr >> 16), "archive_link",
                 f"member {info.filename!r} is a symbolic link"),
                (bool(info.flag_bits & 0x1), "archive_encrypted", f"member {info.filename!r} is encrypted"),
                (ratio > self.limits.max_ratio, "archive_bomb",
                 f"member {info.filename!r} expands {info.file_size} bytes from {info.compress_size} (over "
                 f"{self.limits.max_ratio:.0f}x): a zip bomb"),
            ])
            if name is not None:
                chosen.append((name, info))
                self.declare(info.file_size)
        self.current = None
        for name, info in chosen:
            try:
                with handle.open(info) as stream:
                    self.extract(name, stream)
            except ArchiveRefused:
                raise
            except Exception as exc:  # zlib.error, lzma.LZMAError, NotImplementedError (Deflate64)...
                raise self.refuse("archive_corrupt", f"member {name!r} cannot be extracted ({_reason(exc)})") \
                    from None

    def tar(self, archive: Path) -> None:
        compressed = archive.stat().st_size
        try:
            handle = tarfile.open(archive, mode="r:*")  # noqa: SIM115 - closed by the with below
        except Exception as exc:  # tarfile and its decompressors raise many types
            raise self.refuse("archive_corrupt", f"not a readable tar archive ({_reason(exc)})") from None
        with handle:
            try:
                for info in handle:  # headers arrive one by one: stop before reading past a limit
                    if info.isdir():
                        continue
                    name = self.note(info.name, [
                        (info.issym() or info.islnk(), "archive_link", f"member {info.name!r} is a link"),
                        (not (info.isfile() or info.issym() or info.islnk()), "archive_special_file",
                         f"member {info.name!r} is a device or FIFO"),
                    ])
                    if name is None:
                        continue
                    self.declare(info.size)
                    if compressed and self.declared / compressed > self.limits.max_ratio \
                            and self.declared > COPY_CHUNK:
                        raise self.refuse("archive_bomb", f"expands past {self.limits.max_ratio:.0f}x its "
                                          f"{compressed} compressed bytes: a compression bomb")
                    stream = handle.extractfile(info)
                    if stream is not None:
                        self.extract(name, stream)
            except ArchiveRefused:
                raise
            except Exception as exc:  # TarError, EOFError, zlib.error, lzma.LZMAError...
                raise self.refuse("archive_corrupt", f"the tar stream is damaged ({_reason(exc)}); members after "
                                  "the damage were not read") from None
