"""A private clamd for the tests and the intake bench: our signatures, our socket, gone on exit.

Production uses the operator's daemon (Debian's clamav-daemon); this one is started from a
throwaway configuration so that a run never depends on, or disturbs, a system clamd.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lora_tasks.errors import LoraTaskError
from lora_tasks.intake.antivirus import clamd_answers

SOCKET_PATH_MAX = 107
"""sun_path holds 108 bytes, NUL included."""


def clamd_binary() -> str:
    found = shutil.which("clamd") or ("/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists() else None)
    if found is None:
        raise LoraTaskError("clamd is not installed. Fix: install Debian's 'clamav-daemon' package (make clamav)")
    return found


def clamd_config(database_dir: Path, socket_path: Path, threads: int = 10, image_fuzzy_hash: bool = True,
                 cache: bool = False) -> str:
    """clamd.conf for a foreground daemon with clamscan's size limits (ClamScan passes the same).

    ``cache``: clamd remembers the MD5 of every clean file and skips rescanning it, so a bench that
    scans the same files twice would measure the cache; off unless asked for."""
    return "\n".join([
        f"LocalSocket {socket_path}",
        f"DatabaseDirectory {database_dir}",
        "Foreground yes",
        f"MaxThreads {threads}",
        "MaxFileSize 2000M",  # clamd's defaults (100M, 400M) report larger files clean without reading them
        "MaxScanSize 2000M",
        f"ScanImageFuzzyHash {'yes' if image_fuzzy_hash else 'no'}",
        "SelfCheck 0",  # no database reload checks while a run measures
        f"DisableCache {'no' if cache else 'yes'}",
        "",
    ])


@contextmanager
def private_clamd(database: Path, folder: Path, threads: int = 10, image_fuzzy_hash: bool = True,
                  cache: bool = False, timeout: float = 60.0, binary: str | None = None) -> Iterator[Path]:
    """Run clamd on ``folder``/clamd.sock with the signature file (or folder of them) ``database``.

    Yields the socket once the daemon answers PING; stops the daemon on exit. Its output is in
    ``folder``/clamd.log. ``threads`` is clamd's MaxThreads; ``image_fuzzy_hash`` and ``cache`` as in
    ``clamd_config``."""
    folder = Path(folder).resolve()
    socket_path = folder / "clamd.sock"
    if len(str(socket_path).encode()) > SOCKET_PATH_MAX:
        raise LoraTaskError(f"the folder {folder} is too deep for a Unix socket ({SOCKET_PATH_MAX} bytes at most). "
                            "Fix: start the daemon in a shorter folder, such as one under /tmp")
    folder.mkdir(parents=True, exist_ok=True)
    database = Path(database)
    if not database.exists():
        raise LoraTaskError(f"the clamd signature database {database} does not exist. Fix: pass a signature file "
                            "(.hdb, .cvd ...) or a folder of them")
    database_dir = folder / "db"
    shutil.rmtree(database_dir, ignore_errors=True)
    if database.is_dir():
        shutil.copytree(database, database_dir)
    else:
        database_dir.mkdir(parents=True)
        shutil.copy(database, database_dir / database.name)
    socket_path.unlink(missing_ok=True)
    config = folder / "clamd.conf"
    config.write_text(clamd_config(database_dir, socket_path, threads, image_fuzzy_hash, cache))
    log_path = folder / "clamd.log"
    with log_path.open("wb") as log_file:
        daemon = subprocess.Popen([binary or clamd_binary(), f"--config-file={config}"], stdin=subprocess.DEVNULL,
                                  stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not clamd_answers(socket_path, timeout=1.0):
            if daemon.poll() is not None:
                raise LoraTaskError(f"clamd exited ({daemon.returncode}) before answering on {socket_path}: "
                                    f"{_tail(log_path)}. Fix: check the signature database {database}")
            if time.monotonic() > deadline:
                raise LoraTaskError(f"clamd did not answer on {socket_path} within {timeout:.0f} s: "
                                    f"{_tail(log_path)}. Fix: give it longer (a full signature database takes "
                                    "a minute to load), or check the database")
            time.sleep(0.02)
        yield socket_path
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def _tail(log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").strip().splitlines()
    return " / ".join(lines[-3:]) or "no output"
