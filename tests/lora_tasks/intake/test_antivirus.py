"""Choosing the engine (auto: clamd when it answers, else clamscan) and clamd's concurrent scan, on a real daemon."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lora_tasks.errors import LoraTaskError
from lora_tasks.intake import antivirus
from lora_tasks.intake.antivirus import ClamdSocket, ClamScan, Verdict, antivirus_from, clamd_answers
from lora_tasks.intake.clamd_daemon import private_clamd
from lora_tasks.settings import PlatformSettings
from tests.lora_tasks.intake.corpus import EICAR


@pytest.fixture(scope="module")
def clamd_socket(clamav_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with private_clamd(clamav_database, tmp_path_factory.mktemp("clamd")) as socket_path:
        yield socket_path


def settings(**values: object) -> PlatformSettings:
    """Explicit values, so that the LORA_* environment of the machine cannot choose for the test."""
    return PlatformSettings(**{"antivirus": "auto", "clamd_socket": None, **values})


def test_auto_uses_clamd_when_it_answers(clamd_socket: Path, clamav_database: Path) -> None:
    engine = antivirus_from(settings(clamd_socket=clamd_socket, clamav_database=clamav_database))
    assert isinstance(engine, ClamdSocket) and engine.path == clamd_socket
    assert PlatformSettings.model_fields["antivirus"].default == "auto"


def test_auto_falls_back_to_clamscan(clamav_database: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    not_a_socket = tmp_path / "plain.sock"
    not_a_socket.write_text("")
    for socket_path in (tmp_path / "none.sock", not_a_socket):
        assert not clamd_answers(socket_path)
        engine = antivirus_from(settings(clamd_socket=socket_path, clamav_database=clamav_database))
        assert isinstance(engine, ClamScan) and engine.database == clamav_database
    assert "clamd does not answer on LORA_CLAMD_SOCKET" in caplog.text


def test_auto_tries_debian_sockets_when_none_is_set(clamd_socket: Path, clamav_database: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    on_this_machine = any(clamd_answers(p) for p in antivirus.DEFAULT_SOCKETS)
    engine = antivirus_from(settings(clamav_database=clamav_database))
    assert isinstance(engine, ClamdSocket if on_this_machine else ClamScan)
    monkeypatch.setattr(antivirus, "DEFAULT_SOCKETS", (tmp_path / "missing.ctl", clamd_socket))
    engine = antivirus_from(settings(clamav_database=clamav_database))
    assert isinstance(engine, ClamdSocket) and engine.path == clamd_socket
    assert isinstance(antivirus_from(settings(antivirus="clamd")), ClamdSocket)
    monkeypatch.setattr(antivirus, "DEFAULT_SOCKETS", (tmp_path / "missing.ctl",))
    assert isinstance(antivirus_from(settings(clamav_database=clamav_database)), ClamScan)
    with pytest.raises(LoraTaskError, match=r"needs LORA_CLAMD_SOCKET.*missing\.ctl.*Fix: "):
        antivirus_from(settings(antivirus="clamd"))


def test_explicit_engines(clamd_socket: Path, clamav_database: Path, tmp_path: Path) -> None:
    assert isinstance(antivirus_from(settings(antivirus="clamd", clamd_socket=clamd_socket)), ClamdSocket)
    assert isinstance(antivirus_from(settings(antivirus="clamscan", clamd_socket=clamd_socket)), ClamScan)
    assert antivirus_from(settings(antivirus="off", clamd_socket=clamd_socket)).name == "off"
    with pytest.raises(LoraTaskError, match=r"clamd does not answer on .*none\.sock .*Fix: start clamd"):
        antivirus_from(settings(antivirus="clamd", clamd_socket=tmp_path / "none.sock"))


def odd_batch(folder: Path, count: int = 200) -> list[Path]:
    """EICAR every 7th file, clean otherwise; odd names, an empty file, a vanished one, an unreadable one."""
    files = []
    for index in range(count):
        infected = index % 7 == 3
        name = f"{index:03d}" + ("\nnew line: x FOUND.jpg" if index % 5 == 0 else ".jpg")
        path = folder / name
        path.write_bytes(EICAR if infected else b"\xff\xd8\xff clean " + str(index).encode() * 50)
        files.append(path)
    files[10].write_bytes(b"")  # clamd: OK; clamscan: "Empty file", read as clean
    files[20].unlink()  # vanished after listing (also the unreadable case when the tests run as root)
    if os.geteuid() != 0:
        files[30].chmod(0)
    return files


def test_concurrent_scan_matches_clamscan(clamd_socket: Path, clamav_database: Path, tmp_path: Path) -> None:
    files = odd_batch(tmp_path)
    by_clamd = ClamdSocket(clamd_socket, threads=8).scan(files)
    by_clamscan = ClamScan(clamav_database).scan(files)
    assert [v.status for v in by_clamd] == [v.status for v in by_clamscan]
    assert [v for v in by_clamd if v.status != "unscanned"] == [v for v in by_clamscan if v.status != "unscanned"]
    expected = [Verdict("infected", "Test.EICAR.UNOFFICIAL") if i % 7 == 3 else Verdict("clean")
                for i in range(len(files))]
    expected[10] = Verdict("clean")  # emptied
    unscanned = [20] if os.geteuid() == 0 else [20, 30]
    assert [i for i, v in enumerate(by_clamd) if v.status == "unscanned"] == unscanned
    assert "No such file" in by_clamd[20].detail
    assert [v for i, v in enumerate(by_clamd) if i not in unscanned] == \
        [v for i, v in enumerate(expected) if i not in unscanned]
    assert ClamdSocket(clamd_socket, threads=1).scan(files) == by_clamd  # the sequential order, too


def test_odd_names_and_files_clamd_cannot_read(clamd_socket: Path, tmp_path: Path) -> None:
    odd, twin = tmp_path / "new\nline: x FOUND.jpg", tmp_path / "x FOUND"
    odd.write_bytes(b"plain")
    twin.write_bytes(EICAR)
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # opened without blocking; clamd says it is not a regular file
    engine = ClamdSocket(clamd_socket)
    start = time.monotonic()
    verdicts = engine.scan([odd, twin, fifo, tmp_path])
    assert time.monotonic() - start < 10
    assert verdicts[:2] == [Verdict("clean"), Verdict("infected", "Test.EICAR.UNOFFICIAL")]
    assert [v.status for v in verdicts[2:]] == ["unscanned", "unscanned"]
    assert all("Not a regular file" in v.detail for v in verdicts[2:])
    assert engine.scan([]) == []


def test_a_daemon_that_stops_fails_clearly(clamav_database: Path, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"plain")
    with private_clamd(clamav_database, tmp_path / "clamd") as socket_path:
        engine = ClamdSocket(socket_path)
        assert engine.scan([tmp_path / "a.jpg"]) == [Verdict("clean")]
    with pytest.raises(LoraTaskError, match=r"stopped answering.*Fix: restart clamd"):
        engine.scan([tmp_path / "a.jpg"] * 3)
    assert engine.scan([tmp_path / "gone.jpg"])[0].status == "unscanned"  # the file's fault, not the daemon's


def test_private_clamd_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "bad.hdb").write_text("not a signature\n")
    with pytest.raises(LoraTaskError, match=r"clamd exited .*Malformed database.*Fix: "), \
            private_clamd(tmp_path / "bad.hdb", tmp_path / "clamd"):
        pass
    with pytest.raises(LoraTaskError, match=r"does not exist\. Fix: "), private_clamd(tmp_path / "no.hdb", tmp_path):
        pass
    with pytest.raises(LoraTaskError, match="too deep for a Unix socket"), \
            private_clamd(tmp_path / "bad.hdb", tmp_path / ("d" * 120)):
        pass


def test_files_over_the_daemons_size_limit_go_to_clamscan(clamav_database: Path, tmp_path: Path) -> None:
    """clamd answers OK above its MaxFileSize without reading: such files are scanned by clamscan, or
    reported unscanned when there is none, never passed as clean."""
    small, big = tmp_path / "small.com", tmp_path / "big.bin"
    small.write_bytes(EICAR)
    big.write_bytes(bytes(5000))
    limit = len(EICAR) + 100
    with private_clamd(clamav_database, tmp_path / "clamd") as socket_path:
        routed = ClamdSocket(socket_path, max_file_bytes=limit, larger=ClamScan(clamav_database))
        assert [v.status for v in routed.scan([big, small])] == ["clean", "infected"]
        alone = ClamdSocket(socket_path, max_file_bytes=limit)
        verdicts = alone.scan([big, small])
        assert [v.status for v in verdicts] == ["unscanned", "infected"] and "MaxFileSize" in verdicts[0].detail
