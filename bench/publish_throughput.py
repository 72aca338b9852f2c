"""Publish throughput: a 100 MB adapter to S3 (a moto server on a loopback port, its own process).

- ``publish``: ``publish_adapter`` end to end: sha256 of every file, the model card, the registry's
  reservation and mark (SQLite), boto3's managed upload (16 MiB parts, 8 threads) and the manifest;
- ``upload_file``: the same managed upload of the weights alone, without the rest of the publish;
- ``put_object``: one PutObject of the same bytes from memory, the simplest upload there is;
- ``loopback sink``: the physical limit of this path: the same bytes as HTTP PUTs over loopback, in the
  same 16 MiB slices on 8 connections, to a server (its own process) that reads and discards them, so
  no S3 parsing, hashing or storing on either side;
- ``local copy``: the bytes copied file to file on this disk, for scale.

Each is run ``--runs`` times, interleaved (each publish makes a new version; every run's objects are
deleted after it, as moto keeps them in memory), and the median is reported in MB/s (10^6 bytes). The
last lines read ``<name>_mb_per_s <x>`` for ``publish``, ``upload_file``, ``put_object``,
``loopback_sink`` and ``local_copy``.

    python bench/publish_throughput.py [--mb 100] [--runs 5]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SLICE = 16 << 20
STREAMS = 8


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_moto(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("moto server did not start")


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_PUT(self) -> None:
        left = int(self.headers["Content-Length"])
        while left:
            left -= len(self.rfile.read(min(left, 1 << 20)))
        self.send_response_only(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def serve_sink(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), Sink).serve_forever()


def sink_put(port: int, path: Path, offset: int, size: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, blocksize=1 << 20)
    with path.open("rb") as f:
        f.seek(offset)
        connection.request("PUT", "/", body=f.read(size), headers={"Content-Length": str(size)})
    connection.getresponse().read()
    connection.close()


def median_mb_per_s(runs: int, size: int, measures: dict[str, Callable[[int], None]],
                    between: Callable[[], None]) -> dict[str, float]:
    """Each measure once per run, interleaved (so that a slower machine state hits them all alike), with
    ``between`` after each, untimed."""
    seconds: dict[str, list[float]] = {name: [] for name in measures}
    for run in range(runs):
        for name, once in measures.items():
            start = time.perf_counter()
            once(run)
            seconds[name].append(time.perf_counter() - start)
            between()
    return {name: size / 1e6 / statistics.median(times) for name, times in seconds.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import boto3
    import numpy as np
    from safetensors.numpy import save_file

    from lora_tasks.ledger.store import open_ledger
    from lora_tasks.publish.publish import publish_adapter
    from lora_tasks.spec.schema import JobSpec
    from lora_tasks.stores.s3 import S3Store

    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    work = Path(tempfile.mkdtemp(prefix="publish-bench-"))
    moto_port, sink_port = free_port(), free_port()
    moto = start_moto(moto_port)
    sink = multiprocessing.Process(target=serve_sink, args=(sink_port,), daemon=True)
    sink.start()
    try:
        adapter = work / "adapter"
        adapter.mkdir()
        weights = adapter / "pytorch_lora_weights.safetensors"
        rng = np.random.default_rng(0)
        save_file({"lora": rng.integers(0, 256, args.mb * 10**6, dtype=np.uint8)}, str(weights))
        size = sum(p.stat().st_size for p in adapter.iterdir())
        endpoint = f"http://127.0.0.1:{moto_port}"
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="bench")
        store = S3Store("bench", "artifacts", endpoint)
        ledger = open_ledger(f"sqlite:///{work}/ledger.db")
        spec = JobSpec.model_validate({"job": {"name": "big", "tenant": "bench"},
                                       "model_config": {"base_model": "org/sd15"},
                                       "output": {"formats": ["diffusers"]}})

        def publish(run: int) -> None:
            result = publish_adapter(store, ledger, spec=spec, run_id=f"bench-{run}", adapter_dir=adapter)
            assert result.version == run + 1, result

        def upload_file(run: int) -> None:
            store.upload(f"upload/{run}", weights)

        def put(run: int) -> None:
            client.put_object(Bucket="bench", Key=f"single/{run}", Body=weights.read_bytes())

        def forget() -> None:
            """moto keeps objects in memory: drop each run's, so every run starts alike."""
            for item in client.list_objects_v2(Bucket="bench").get("Contents", []):
                client.delete_object(Bucket="bench", Key=item["Key"])

        def loopback(run: int) -> None:
            slices = [(offset, min(SLICE, size - offset)) for offset in range(0, size, SLICE)]
            with ThreadPoolExecutor(STREAMS) as pool:
                list(pool.map(lambda s: sink_put(sink_port, weights, *s), slices))

        def copy(run: int) -> None:
            shutil.copyfile(weights, work / "copy")

        assert weights.stat().st_size == size
        figures = median_mb_per_s(args.runs, size, {"publish": publish, "upload_file": upload_file,
                                                    "put_object": put, "loopback_sink": loopback,
                                                    "local_copy": copy}, forget)
    finally:
        moto.terminate()
        moto.wait(timeout=10)
        sink.terminate()
        shutil.rmtree(work, ignore_errors=True)
    print(f"| adapter | runs | publish | upload_file | put_object | loopback sink ({STREAMS} streams) | local copy |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {size / 1e6:.0f} MB | {args.runs} | " + " | ".join(f"{v:.0f} MB/s" for v in figures.values()) + " |")
    for name, value in figures.items():
        print(f"{name}_mb_per_s {value:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
