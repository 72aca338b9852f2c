"""Archive expansion: every unsafe construct refused with its code, nothing left behind."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lora_tasks.intake.archives import ArchiveLimits, ArchiveRefused, expand_archive, inspect_archive


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


@pytest.mark.parametrize(("name", "build", "kind", "code"), CASES, ids=[c[0] for c in CASES])
def test_inspecting_refuses_what_expanding_refuses_and_writes_nothing(tmp_path: Path, name: str,
                                                                     build: Callable[[Path], Path], kind: str,
                                                                     code: str) -> None:
    """What the tenant API checks an upload with before it stores it."""
    archive = build(tmp_path)
    before = set(tmp_path.rglob("*"))
    limits = ArchiveLimits(max_members=20, max_total_bytes=5000 if name == "too large" else 4 << 30)
    with pytest.raises(ArchiveRefused) as caught:
        inspect_archive(archive, kind, limits)
    assert caught.value.code == code
    assert set(tmp_path.rglob("*")) == before


def test_inspecting_a_good_archive_lists_its_members(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"b/cat.png": b"x", "a.txt": b"y"})
    assert [(m.name, m.problem) for m in inspect_archive(archive, "zip")] == [("a.txt", None), ("b/cat.png", None)]


def test_good_archives_expand_with_their_folders(tmp_path: Path) -> None:
    members = {"a/b/one.png": b"1", "two.jpg": b"22", "ünï cödé\nname.png": b"333"}
    for kind, archive in (("zip", make_zip(tmp_path / "g.zip", members)),
                          ("tar", make_tar(tmp_path / "g.tar", members)),
                          ("gz", make_tar(tmp_path / "g.tgz", members, "w:gz"))):
        out = tmp_path / f"out-{kind}"
        expanded = expand_archive(archive, kind, out)
        assert [m.name for m in expanded] == sorted(members)
        assert {m.name: (out / str(m.file)).read_bytes() for m in expanded} == members


def test_members_that_would_clash_as_files_are_all_kept(tmp_path: Path) -> None:
    """A member named like another's folder cannot be written under its own name: members are numbered."""
    archive = make_zip(tmp_path / "x.zip", {"x": b"file", "x/y": b"inside", "X": b"upper"})
    expanded = expand_archive(archive, "zip", tmp_path / "out")
    assert {m.name: (tmp_path / "out" / str(m.file)).read_bytes() for m in expanded} == \
        {"x": b"file", "x/y": b"inside", "X": b"upper"}


def test_a_second_member_of_the_same_name_is_refused_not_written_over_the_first(tmp_path: Path) -> None:
    archive = tmp_path / "twice.zip"
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("a.jpg", b"first")
        handle.writestr("a.jpg", b"second")
    for kind, path in (("zip", archive), ("tar", make_tar_with_twice(tmp_path / "twice.tar"))):
        expanded = {m.name: m for m in expand_archive(path, kind, tmp_path / f"out-{kind}")}
        assert (tmp_path / f"out-{kind}" / str(expanded["a.jpg"].file)).read_bytes() == b"first"
        copy = expanded["a.jpg (copy 2)"]
        assert copy.file is None and copy.problem == "archive_duplicate_member" and "first one was used" in \
            str(copy.detail)


def make_tar_with_twice(path: Path) -> Path:
    with tarfile.open(path, "w") as archive:
        for data in (b"first", b"second"):
            info = tarfile.TarInfo("a.jpg")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_the_archive_policy_decides_what_one_unsafe_member_costs(tmp_path: Path, kind: str) -> None:
    members = {"safe_1.jpg": b"1", "../escape.jpg": b"2", "safe_2.jpg": b"3"}
    archive = make_zip(tmp_path / "m.zip", members) if kind == "zip" else make_tar(tmp_path / "m.tar", members)
    with pytest.raises(ArchiveRefused) as caught:  # the default: the whole archive, every member reported lost
        expand_archive(archive, kind, tmp_path / "whole")
    assert caught.value.code == "archive_unsafe_path" and "keep_safe_members" in str(caught.value)
    fates = {m.name: m.problem for m in caught.value.members}
    assert fates == {"../escape.jpg": "archive_unsafe_path", "safe_1.jpg": None, "safe_2.jpg": None}
    assert not (tmp_path / "whole").exists()
    kept = {m.name: m for m in expand_archive(archive, kind, tmp_path / "safe", policy="keep_safe_members")}
    assert kept["../escape.jpg"].file is None and kept["../escape.jpg"].problem == "archive_unsafe_path"
    assert (tmp_path / "safe" / str(kept["safe_2.jpg"].file)).read_bytes() == b"3"
    assert not (tmp_path / "escape.jpg").exists()


def test_refusal_messages_are_one_line_without_the_platforms_paths(tmp_path: Path) -> None:
    archive = raw(tmp_path / "a.zip", b"PK\x03\x04 garbage")
    with pytest.raises(ArchiveRefused) as caught:
        expand_archive(archive, "zip", tmp_path / "out")
    assert "\n" not in str(caught.value) and str(tmp_path) not in str(caught.value)
    bomb = make_zip(tmp_path / "bomb.zip", {"z.bin": bytes(20 << 20), "ok.jpg": b"x"})
    with pytest.raises(ArchiveRefused) as caught:
        expand_archive(bomb, "zip", tmp_path / "out")
    assert {m.name for m in caught.value.members} == {"z.bin", "ok.jpg"}  # the lost members are named


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
