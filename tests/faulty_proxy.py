"""A loopback HTTP proxy in front of an S3 server (moto) that fails requests on cue, the ways S3 and
networks fail: ``500`` (InternalError), ``503`` (SlowDown, S3's throttling), ``drop`` (the connection
closes after the request was read, before it reached the server) and ``lost_reply`` (the server did
the work, then the connection closes before its reply). Everything else is forwarded as it is, and
every request is logged with what happened to it.

    with FaultyProxy(s3_endpoint) as proxy:
        proxy.fail("503", times=2, method="PUT")
        client = boto3.client("s3", endpoint_url=proxy.url)
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlparse

Fault = Literal["500", "503", "drop", "lost_reply"]
ERRORS = {"500": ("InternalError", "We encountered an internal error. Please try again."),
          "503": ("SlowDown", "Please reduce your request rate.")}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "expect"}


@dataclass
class Rule:
    fault: Fault
    times: int | None
    """How many matching requests fail; None: all of them."""
    method: str | None
    path: str
    """A substring of the request's path and query ('manifest.json', 'partNumber=2')."""
    skip: int
    """Matching requests let through before the first failure."""

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self.path in path


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    outcome: str
    """'forwarded' or the fault."""
    status: int | None = None
    """The server's status, for a request that reached it."""


class FaultyProxy:
    def __init__(self, upstream: str) -> None:
        target = urlparse(upstream)
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.rules: list[Rule] = []
        self.log: list[Seen] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.proxy = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)  # quick stop

    def __enter__(self) -> FaultyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail(self, fault: Fault, *, times: int | None = 1, method: str | None = None, path: str = "",
             skip: int = 0) -> None:
        with self.lock:
            self.rules.append(Rule(fault, times, method, path, skip))

    def heal(self) -> None:
        with self.lock:
            self.rules.clear()

    def decide(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for rule in self.rules:
                if not rule.matches(method, path):
                    continue
                if rule.skip:
                    rule.skip -= 1
                    return None
                if rule.times is not None:
                    if rule.times == 0:
                        continue
                    rule.times -= 1
                return rule.fault
        return None

    def record(self, seen: Seen) -> None:
        with self.lock:
            self.log.append(seen)

    def writes(self) -> list[str]:
        """Paths of the writes (PUT, POST) the server answered with success, in the order it answered."""
        return [s.path for s in self.log if s.method in {"PUT", "POST"} and s.status is not None and s.status < 300]

    def faults(self) -> list[Seen]:
        return [s for s in self.log if s.outcome != "forwarded"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and "100 Continue" for botocore's Expect header

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        """The request body as sent: Content-Length bytes, or the raw chunked stream with its trailers."""
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            raw = bytearray()
            while True:
                size_line = self.rfile.readline()
                raw += size_line
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                        raw += line  # trailers (botocore's checksum)
                    raw += b"\r\n"
                    return bytes(raw)
                raw += self.rfile.read(size + 2)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _proxy(self) -> None:
        proxy: FaultyProxy = self.server.proxy  # type: ignore[attr-defined]
        body = self._body()
        fault = proxy.decide(self.command, self.path)
        if fault in ERRORS:
            proxy.record(Seen(self.command, self.path, fault))
            self._error(fault)
            return
        if fault == "drop":
            proxy.record(Seen(self.command, self.path, fault))
            self.close_connection = True
            return
        status, reason, headers, data = self._forward(body)
        proxy.record(Seen(self.command, self.path, fault or "forwarded", status))
        if fault == "lost_reply":
            self.close_connection = True
            return
        self.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
        self.send_header("Content-Length", length if self.command == "HEAD" else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.server.proxy.upstream, timeout=60)  # type: ignore[attr-defined]
        try:
            connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() != "expect":
                    connection.putheader(name, value)
            connection.endheaders()
            connection.send(body)
            response = connection.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheaders(), data
        finally:
            connection.close()

    def _error(self, fault: str) -> None:
        code, message = ERRORS[fault]
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
               f"<RequestId>faulty-proxy</RequestId></Error>").encode()
        self.send_response_only(int(fault), code)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(xml)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(xml)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _proxy
