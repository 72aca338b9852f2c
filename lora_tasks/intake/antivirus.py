"""ClamAV over a batch of files, with results tied to files unambiguously.

clamscan and clamdscan print file names verbatim, so a name holding a newline or
``: x FOUND`` cannot be parsed back. Hence:

- ``clamscan`` (no daemon): one process per batch over a file list of index-named
  symlinks (``000001`` ...), so every result line names its file by number. A file with
  no result line (it vanished, or could not be read) is reported as unscanned.
- ``clamd`` (a daemon socket is configured): clamdscan cannot map results back through
  such links, so we speak clamd's own protocol (as clamdscan does): one ``zFILDES`` request
  per file, passing an open descriptor, so clamd reads with our permissions and never
  sees a name at all.

Either way a file is ``clean``, ``infected`` (with the signature) or ``unscanned``: the
filter rejects the last two, so a broken scanner fails closed.
"""

from __future__ import annotations

import array
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from lora_tasks.errors import LoraTaskError
from lora_tasks.settings import PlatformSettings

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
                                "or set LORA_ANTIVIRUS=off where uploads are scanned elsewhere")
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
        if outcome == "OK":
            verdicts[index] = Verdict("clean")
        elif outcome.endswith(" FOUND"):
            verdicts[index] = Verdict("infected", outcome.removesuffix(" FOUND"))
        else:
            verdicts[index] = Verdict("unscanned", outcome)
    return verdicts


class ClamdSocket:
    name = "clamd"

    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.path, self.timeout = path, timeout
        try:
            self._request(b"zPING\0")
        except OSError as exc:
            raise LoraTaskError(f"clamd does not answer on {path} ({exc}). Fix: start clamd, or correct "
                                "LORA_CLAMD_SOCKET") from None

    def _request(self, command: bytes, descriptor: int | None = None) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(self.timeout)
            conn.connect(str(self.path))
            conn.sendall(command)
            if descriptor is not None:
                conn.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [descriptor]))])
            reply = b""
            while not reply.endswith(b"\0"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                reply += chunk
        return reply.rstrip(b"\0").decode("utf-8", errors="replace")

    def scan(self, paths: list[Path]) -> list[Verdict]:
        return [self._scan_one(path) for path in paths]

    def _scan_one(self, path: Path) -> Verdict:
        try:
            with Path(path).open("rb") as handle:
                reply = self._request(b"zFILDES\0", handle.fileno())
        except OSError as exc:
            return Verdict("unscanned", str(exc))
        outcome = reply.rpartition(": ")[2]
        if outcome == "OK":
            return Verdict("clean")
        if outcome.endswith(" FOUND"):
            return Verdict("infected", outcome.removesuffix(" FOUND"))
        return Verdict("unscanned", reply)


def antivirus_from(settings: PlatformSettings) -> Antivirus:
    """The engine the operator configured (LORA_ANTIVIRUS, LORA_CLAMD_SOCKET, LORA_CLAMAV_DATABASE)."""
    if settings.antivirus == "off":
        return NoAntivirus()
    if settings.antivirus == "clamd" or settings.clamd_socket:
        if not settings.clamd_socket:
            raise LoraTaskError("LORA_ANTIVIRUS=clamd needs LORA_CLAMD_SOCKET, the daemon's socket path")
        return ClamdSocket(settings.clamd_socket)
    return ClamScan(settings.clamav_database, image_fuzzy_hash=settings.clamav_image_fuzzy_hash)
