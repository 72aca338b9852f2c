"""Archive expansion: every unsafe construct refused with its code, nothing left behind."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lora_tasks.intake.archives import ArchiveLimits, ArchiveRefused, expand_archive


def make_zip(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, "/etc/passwd")
    return path


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w", special: str | None = None) -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if special:
            info = tarfile.TarInfo("link.jpg")
            info.type = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[special]
            info.linkname = "/etc/shadow"
            archive.addfile(info)
    return path


def raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


CASES: list[tuple[str, Callable[[Path], Path], str, str]] = [
    ("absolute path", lambda d: make_zip(d / "a.zip", {"/etc/cron.d/x": b"x"}), "zip", "archive_unsafe_path"),
    ("dot-dot path", lambda d: make_zip(d / "a.zip", {"ok/../../x.png": b"x"}), "zip", "archive_unsafe_path"),
    ("backslash path", lambda d: make_zip(d / "a.zip", {"..\\x.png": b"x"}), "zip", "archive_unsafe_path"),
    ("zip symlink", lambda d: make_zip(d / "a.zip", {"a.png": b"x"}, symlink="b.png"), "zip", "archive_link"),
    ("zip bomb", lambda d: make_zip(d / "a.zip", {"z.bin": bytes(20 << 20)}), "zip", "archive_bomb"),
    ("too many", lambda d: make_zip(d / "a.zip", {f"{i}.png": b"x" for i in range(30)}), "zip",
     "archive_too_many_members"),
    ("too large", lambda d: make_zip(d / "a.zip", {"a.bin": bytes(3000), "b.bin": bytes(3000)}), "zip",
     "archive_too_large"),
    ("tar symlink", lambda d: make_tar(d / "a.tar", {"a.png": b"x"}, special="sym"), "tar", "archive_link"),
    ("tar hard link", lambda d: make_tar(d / "a.tar", {}, special="hard"), "tar", "archive_link"),
    ("tar fifo", lambda d: make_tar(d / "a.tar", {}, special="fifo"), "tar", "archive_special_file"),
    ("tar dot-dot", lambda d: make_tar(d / "a.tar", {"../x.png": b"x"}), "tar", "archive_unsafe_path"),
    ("tar.gz bomb", lambda d: make_tar(d / "a.tgz", {"z.bin": bytes(20 << 20)}, "w:gz"), "gz", "archive_bomb"),
    ("not a zip", lambda d: raw(d / "a.zip", b"PK\x03\x04 garbage"), "zip", "archive_corrupt"),
    ("gzip of no tar", lambda d: raw(d / "a.gz", gzip.compress(b"hello")), "gz", "archive_corrupt"),
]


@pytest.mark.parametrize(("name", "build", "kind", "code"), CASES, ids=[c[0] for c in CASES])
def test_unsafe_archives_are_refused(tmp_path: Path, name: str, build: Callable[[Path], Path], kind: str,
                                     code: str) -> None:
    archive = build(tmp_path)
    limits = ArchiveLimits(max_members=20, max_total_bytes=5000 if name == "too large" else 4 << 30)
    with pytest.raises(ArchiveRefused) as caught:
        expand_archive(archive, kind, tmp_path / "out", limits)
    assert caught.value.code == code
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial*"))
    assert not (tmp_path.parent / "x.png").exists()


def test_good_archives_expand_with_their_folders(tmp_path: Path) -> None:
    members = {"a/b/one.png": b"1", "two.jpg": b"22", "ünï cödé\nname.png": b"333"}
    for kind, archive in (("zip", make_zip(tmp_path / "g.zip", members)),
                          ("tar", make_tar(tmp_path / "g.tar", members)),
                          ("gz", make_tar(tmp_path / "g.tgz", members, "w:gz"))):
        out = tmp_path / f"out-{kind}"
        assert expand_archive(archive, kind, out) == sorted(members)
        assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == members


def test_headers_that_understate_sizes_are_caught_while_copying(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "liar.zip", {"big.bin": bytes(10_000)})
    data = bytearray(archive.read_bytes())
    # rewrite the central directory's uncompressed size of the member to a small number
    central = data.rfind(b"PK\x01\x02")
    data[central + 24:central + 28] = (100).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveRefused) as caught:
        expand_archive(archive, "zip", tmp_path / "out", ArchiveLimits(max_total_bytes=1000))
    assert caught.value.code in {"archive_too_large", "archive_corrupt"}
    assert not (tmp_path / "out").exists()
