"""Replay a request sequence through the cache policies and Belady's optimum for the same sequence.

    python -m lora_tasks.serve.replay REQUESTS.txt --slots 8 [--ram-bytes B] [--adapter-bytes N] [--policy lru ...]

REQUESTS.txt has one request a line, ``ID`` or ``ID BYTES`` (blank lines and ``#`` comments are skipped).
Prints ``policy <name> slots <K> hit_rate <x> of_optimal <y>`` per policy and for Belady (of_optimal 1.0000,
the limit no online policy can beat). With ``--ram-bytes`` the RAM tier behind the pipeline tier is replayed
too: it sees the pipeline's misses only, keeps each state dict it loaded (inclusive: an adapter in the
pipeline may stay in RAM), is bounded by bytes and runs the same policy; its ``tier ram policy <name> bytes
<B> hit_rate <x>`` is the share of pipeline misses it served.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lora_tasks.cli import entry_point
from lora_tasks.errors import LoraTaskError
from lora_tasks.serve.belady import optimal_hits
from lora_tasks.serve.policies import POLICIES, make_policy

DEFAULT_ADAPTER_BYTES = 100_000_000
"""The size of an adapter whose line gives none: about an SDXL LoRA of rank 16 to 32 in fp16."""


class RequestsFileError(LoraTaskError):
    """The request file cannot be replayed as it is."""


@dataclass(frozen=True)
class Requests:
    """The adapter ids in request order and the sizes their lines gave."""

    ids: list[str]
    sizes: dict[str, int]


def read_requests(path: Path) -> Requests:
    """Parse a request file; every problem names the line and the fix."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RequestsFileError(f"{path}: cannot read it ({exc.strerror}). Fix: pass an existing file") from exc
    ids: list[str] = []
    sizes: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and not (words[1].isascii() and words[1].isdigit())):
            raise RequestsFileError(f"{path} line {number}: {line.strip()!r} is not 'ID' or 'ID BYTES'. Fix: write "
                                    "one adapter id a line, optionally followed by its size in bytes")
        if len(words) == 2:
            size = int(words[1])
            if sizes.setdefault(words[0], size) != size:
                raise RequestsFileError(f"{path} line {number}: {words[0]} was {sizes[words[0]]} bytes on an "
                                        f"earlier line, {size} here. Fix: give an adapter one size")
        ids.append(words[0])
    if not ids:
        raise RequestsFileError(f"{path} has no requests. Fix: write one adapter id a line "
                                "(python -m lora_tasks.serve.traces writes such files)")
    return Requests(ids, sizes)


def pipeline_misses(requests: Iterable[str], policy: str, slots: int) -> list[str]:
    """The requests a tier of ``slots`` entries run by ``policy`` has to load, in order."""
    cache = make_policy(policy, slots)
    misses = []
    for key in requests:
        if key in cache:
            cache.hit(key)
        else:
            misses.append(key)
            cache.insert(key)
            if len(cache) > slots:
                cache.evict()
    return misses


def ram_hits(misses: Iterable[str], policy: str, capacity: int, size: dict[str, int], default: int) -> int:
    """How many of the pipeline's misses a RAM tier of ``capacity`` bytes run by ``policy`` serves."""
    cache = make_policy(policy, max(1, capacity // max(1, default)))
    used, hits = 0, 0
    for key in misses:
        if key in cache:
            cache.hit(key)
            hits += 1
            continue
        cache.insert(key)
        used += size.get(key, default)
        while used > capacity:
            used -= size.get(cache.evict(), default)
    return hits


def report(requests: Requests, slots: int, policies: Sequence[str], ram_bytes: int | None = None,
           adapter_bytes: int = DEFAULT_ADAPTER_BYTES) -> list[str]:
    """The replay's output lines: each policy, then Belady, then the RAM tier's lines if asked."""
    total = len(requests.ids)
    optimum = optimal_hits(requests.ids, slots)
    lines, ram = [], []
    for name in policies:
        misses = pipeline_misses(requests.ids, name, slots)
        hits = total - len(misses)
        lines.append(f"policy {name} slots {slots} hit_rate {hits / total:.4f} of_optimal "
                     f"{hits / optimum if optimum else 1.0:.4f}")
        if ram_bytes is not None:
            served = ram_hits(misses, name, ram_bytes, requests.sizes, adapter_bytes)
            ram.append(f"tier ram policy {name} bytes {ram_bytes} hit_rate "
                       f"{served / len(misses) if misses else 0.0:.4f}")
    lines.append(f"policy belady slots {slots} hit_rate {optimum / total:.4f} of_optimal 1.0000")
    return lines + ram


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.serve.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("requests", type=Path, help="one adapter id a line, optionally followed by its bytes")
    parser.add_argument("--slots", type=_positive, required=True, help="adapters the pipeline tier holds")
    parser.add_argument("--ram-bytes", type=_positive, help="also replay a RAM tier of this many bytes")
    parser.add_argument("--adapter-bytes", type=_positive, default=DEFAULT_ADAPTER_BYTES,
                        help=f"size of an adapter whose line gives none (default {DEFAULT_ADAPTER_BYTES})")
    parser.add_argument("--policy", nargs="+", choices=POLICIES, default=list(POLICIES),
                        help="the policies to replay (default: all)")
    args = parser.parse_args(argv)
    for line in report(read_requests(args.requests), args.slots, args.policy, args.ram_bytes, args.adapter_bytes):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
