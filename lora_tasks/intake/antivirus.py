"""ClamAV over a batch of files, with results tied to files unambiguously.

clamscan and clamdscan print file names verbatim, so a name holding a newline or
``: x FOUND`` cannot be parsed back. Hence:

- ``clamscan`` (no daemon): one process per batch over a file list of index-named
  symlinks (``000001`` ...), so every result line names its file by number. A file with
  no result line (it vanished, or could not be read) is reported as unscanned.
- ``clamd`` (a running daemon): clamdscan cannot map results back through such links, so
  we speak clamd's own protocol (as clamdscan does): one ``zFILDES`` request per file,
  passing an open descriptor, so clamd reads with our permissions and never sees a name at
  all. A few requests run at once (clamd scans each on one of its MaxThreads threads).

LORA_ANTIVIRUS=auto (the default) uses clamd when one answers PING on LORA_CLAMD_SOCKET
or, when that is unset, on Debian's standard sockets; otherwise clamscan.

Either way a file is ``clean``, ``infected`` (with the signature) or ``unscanned``: the
filter rejects the last two, so a broken scanner fails closed.
"""

from __future__ import annotations

import array
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from lora_tasks.errors import LoraTaskError
from lora_tasks.settings import PlatformSettings

log = logging.getLogger(__name__)

DEFAULT_SOCKETS = (Path("/run/clamav/clamd.ctl"), Path("/var/run/clamav/clamd.ctl"))
"""Where Debian's clamav-daemon listens; tried by LORA_ANTIVIRUS=auto/clamd when LORA_CLAMD_SOCKET is unset."""
PROBE_TIMEOUT = 5.0
"""Seconds ``auto`` waits for a daemon's PONG before it settles for clamscan."""
LINE = re.compile(r"^(?:.*/)?(\d{6,}): (.*)$")
SIZE_LIMITS = ["--max-filesize=2000M", "--max-scansize=2000M"]
"""clamscan skips files over 100 MB by default and reports them clean; ours may be larger."""


@dataclass(frozen=True)
class Verdict:
    status: Literal["clean", "infected", "unscanned"]
    detail: str = ""


class Antivirus(Protocol):
    name: str

    def scan(self, paths: list[Path]) -> list[Verdict]: ...


class NoAntivirus:
    """For installations that scan uploads elsewhere; chosen by the operator, never by a job."""

    name = "off"

    def scan(self, paths: list[Path]) -> list[Verdict]:
        return [Verdict("clean", "antivirus off") for _ in paths]


class ClamScan:
    name = "clamscan"

    def __init__(self, database: Path | None = None, binary: str = "clamscan", image_fuzzy_hash: bool = True) -> None:
        found = shutil.which(binary)
        if found is None:
            raise LoraTaskError("the antivirus 'clamscan' is not installed. Fix: install Debian's 'clamav' package, "
                                "run clamd (LORA_ANTIVIRUS=auto uses it when it answers), or set "
                                "LORA_ANTIVIRUS=off where uploads are scanned elsewhere")
        self.binary, self.database = found, database
        self.extra = [] if image_fuzzy_hash else ["--scan-image-fuzzy-hash=no"]

    def scan(self, paths: list[Path]) -> list[Verdict]:
        if not paths:
            return []
        with tempfile.TemporaryDirectory(prefix="clamscan-") as tmp:
            links = Path(tmp, "links")
            links.mkdir()
            listing = []
            for index, path in enumerate(paths, start=1):
                link = links / f"{index:06d}"
                link.symlink_to(Path(path).resolve())
                listing.append(str(link))
            Path(tmp, "list").write_text("\n".join(listing) + "\n")
            command = [self.binary, "--no-summary", "--follow-file-symlinks=1", *SIZE_LIMITS, *self.extra,
                       f"--file-list={tmp}/list"]
            if self.database:
                command.insert(1, f"--database={self.database}")
            result = subprocess.run(command, capture_output=True, text=True, errors="replace", check=False)
        verdicts = _parse(result.stdout, len(paths))
        if result.returncode == 2 and all(v.status == "unscanned" for v in verdicts):
            raise LoraTaskError(f"clamscan failed: {result.stderr.strip()[-500:]}. Fix: check its signature "
                                "database (LORA_CLAMAV_DATABASE, or run freshclam)")
        return verdicts


def _parse(stdout: str, count: int) -> list[Verdict]:
    verdicts = [Verdict("unscanned", "no result from the scanner") for _ in range(count)]
    for line in stdout.splitlines():
        match = LINE.match(line)
        if not match:
            continue
        index, outcome = int(match.group(1)) - 1, match.group(2)
        if not 0 <= index < count:
            continue
        if outcome in ("OK", "Empty file"):  # clamscan skips 0-byte files (clamd says OK): nothing to infect
            verdicts[index] = Verdict("clean")
        elif outcome.endswith(" FOUND"):
            verdicts[index] = Verdict("infected", outcome.removesuffix(" FOUND"))
        else:
            verdicts[index] = Verdict("unscanned", outcome)
    return verdicts


class ClamdUnreachable(OSError):
    """The daemon itself did not answer (as opposed to a file we could not open)."""


def _request(path: Path, command: bytes, timeout: float, descriptor: int | None = None) -> str:
    """One clamd command on its own connection; the reply without its NUL."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(path))
            conn.sendall(command)
            if descriptor is not None:
                conn.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [descriptor]))])
            reply = b""
            while not reply.endswith(b"\0"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                reply += chunk
    except OSError as exc:
        raise ClamdUnreachable(str(exc) or type(exc).__name__) from exc
    return reply.rstrip(b"\0").decode("utf-8", errors="replace")


def clamd_answers(path: Path, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a clamd listening on ``path`` answers PING with PONG."""
    try:
        return _request(path, b"zPING\0", timeout) == "PONG"
    except OSError:
        return False


class ClamdSocket:
    name = "clamd"

    def __init__(self, path: Path, timeout: float = 60.0, threads: int = 8, max_file_bytes: int | None = None,
                 larger: Antivirus | None = None) -> None:
        """``threads``: requests in flight at once; keep it at or below clamd's MaxThreads (default 10).
        ``max_file_bytes``: the daemon's MaxFileSize, above which it answers OK without reading a file; such
        files go to ``larger`` (clamscan) or, without one, are reported unscanned."""
        self.path, self.timeout, self.threads = Path(path), timeout, max(1, threads)
        self.max_file_bytes, self.larger = max_file_bytes, larger
        try:
            reply = _request(self.path, b"zPING\0", min(timeout, PROBE_TIMEOUT))
        except OSError as exc:
            reply = str(exc)
        if reply != "PONG":
            raise LoraTaskError(f"clamd does not answer on {path} ({reply or 'no reply'}). Fix: start clamd "
                                "(Debian's clamav-daemon), correct LORA_CLAMD_SOCKET, or set LORA_ANTIVIRUS=auto "
                                "to fall back to clamscan") from None

    def scan(self, paths: list[Path]) -> list[Verdict]:
        if not paths:
            return []
        large = [i for i, p in enumerate(paths) if self.max_file_bytes is not None and _size(p) > self.max_file_bytes]
        verdicts = dict(zip(large, self._scan_large([paths[i] for i in large]), strict=True))
        small = [p for i, p in enumerate(paths) if i not in verdicts]
        if small:
            scanned = iter(self._scan_small(small))
            return [verdicts[i] if i in verdicts else next(scanned) for i in range(len(paths))]
        return [verdicts[i] for i in range(len(paths))]

    def _scan_large(self, paths: list[Path]) -> list[Verdict]:
        if not paths:
            return []
        if self.larger is None:
            return [Verdict("unscanned", f"over clamd's MaxFileSize ({self.max_file_bytes} bytes)") for _ in paths]
        return self.larger.scan(paths)

    def _scan_small(self, paths: list[Path]) -> list[Verdict]:
        with ThreadPoolExecutor(max_workers=min(self.threads, len(paths)), thread_name_prefix="clamd") as pool:
            outcomes = list(pool.map(self._scan_one, paths))
        if all(unreachable for _, unreachable in outcomes):
            raise LoraTaskError(f"clamd on {self.path} stopped answering ({outcomes[0][0].detail}). Fix: restart "
                                "clamd (Debian's clamav-daemon), or correct LORA_CLAMD_SOCKET")
        return [verdict for verdict, _ in outcomes]

    def _scan_one(self, path: Path) -> tuple[Verdict, bool]:
        """The file's verdict, and whether the daemon (rather than the file) was the problem."""
        try:
            # O_NONBLOCK: a FIFO must not hang the scan; clamd then answers "Not a regular file ERROR"
            descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as exc:  # its strerror: the message would name the file's path on this machine
            return Verdict("unscanned", exc.strerror or type(exc).__name__), False
        try:
            reply = _request(self.path, b"zFILDES\0", self.timeout, descriptor)
        except ClamdUnreachable as exc:
            return Verdict("unscanned", f"clamd did not answer: {exc}"), True
        finally:
            os.close(descriptor)
        outcome = reply.rpartition(": ")[2]  # "fd[12]: OK": clamd never sees the file's name
        if outcome == "OK":
            return Verdict("clean"), False
        if outcome.endswith(" FOUND"):
            return Verdict("infected", outcome.removesuffix(" FOUND")), False
        return Verdict("unscanned", reply or "no reply from clamd"), False


def antivirus_from(settings: PlatformSettings) -> Antivirus:
    """The engine the operator configured (LORA_ANTIVIRUS, LORA_CLAMD_SOCKET, LORA_CLAMAV_DATABASE).

    ``auto``: clamd if it answers on LORA_CLAMD_SOCKET (or, when unset, on Debian's sockets), else clamscan;
    ``clamd``: the same daemon, or an error; ``clamscan``; ``off``."""
    if settings.antivirus == "off":
        return NoAntivirus()
    if settings.antivirus == "clamd" and settings.clamd_socket:
        return _daemon(settings, settings.clamd_socket)
    if settings.antivirus in ("auto", "clamd"):
        for candidate in [settings.clamd_socket] if settings.clamd_socket else DEFAULT_SOCKETS:
            if clamd_answers(candidate):
                return _daemon(settings, candidate)
        if settings.antivirus == "clamd":
            raise LoraTaskError("LORA_ANTIVIRUS=clamd needs LORA_CLAMD_SOCKET, the daemon's socket path: no clamd "
                                f"answers on {' or '.join(map(str, DEFAULT_SOCKETS))}. Fix: set LORA_CLAMD_SOCKET, "
                                "start Debian's clamav-daemon, or set LORA_ANTIVIRUS=auto to fall back to clamscan")
        if settings.clamd_socket:
            log.warning("clamd does not answer on LORA_CLAMD_SOCKET=%s; scanning with clamscan instead (slower)",
                        settings.clamd_socket)
    return ClamScan(settings.clamav_database, image_fuzzy_hash=settings.clamav_image_fuzzy_hash)


def _daemon(settings: PlatformSettings, path: Path) -> ClamdSocket:
    if settings.clamav_database:
        log.warning("scanning with clamd on %s: it uses its own DatabaseDirectory, not LORA_CLAMAV_DATABASE=%s "
                    "(which only clamscan reads)", path, settings.clamav_database)
    larger = ClamScan(settings.clamav_database, image_fuzzy_hash=settings.clamav_image_fuzzy_hash) \
        if shutil.which("clamscan") else None
    return ClamdSocket(path, max_file_bytes=settings.clamd_max_file_bytes, larger=larger)


def _size(path: Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0  # clamd reports it unscanned when it cannot be opened
