"""Intake throughput: scan + filter against plain Pillow decoding of the same files.

On a generated set of 2,000 JPEGs at 512-1024 px (all distinct, so nothing short-cuts):

- ``decode``: ``Image.open(path).load()`` for every file: a full colour decode;
- ``draft decode``: the same with libjpeg's half-size grayscale DCT scaling, the decode the
  filter's check uses (every compressed byte is still entropy-decoded);
- ``intake``: ``scan_dataset`` (read, sha256, sniff, header, end of image) then
  ``filter_manifest`` (type, size, pixel and trailing-data checks, draft decode, perceptual
  hash, duplicate search), antivirus off;
- the same with the antivirus on, each engine with a one-signature database: clamd (the
  default where a daemon runs: a private one, started here, its cache off so every round
  scans every byte), with and without its fuzzy hashing of images, and clamscan (one
  process per batch, the fallback without a daemon). ``antivirus_ratio`` is intake with
  clamd over intake with the antivirus off, on the same files.

All use the same number of worker processes (all cores). Runs alternate and medians are
reported (the antivirus columns too); the last line is ``ratio <intake images/s ÷ draft decode images/s>``:
the same decode, so what is left is the pipeline's own cost. The ratio to the full-colour decode is
printed too.

    python bench/intake_throughput.py [--images 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_jpegs(folder: Path, count: int) -> list[Path]:
    """Distinct photo-like JPEGs (noise, gradients, shapes) with sides between 512 and 1024."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("*.jpg"))
    if len(existing) == count:
        return existing
    shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = random.Random(0)
    for i in range(count):
        size = (rng.randrange(512, 1025), rng.randrange(512, 1025))
        base = np.random.default_rng(i).integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize(size, Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(image)
        for _ in range(8):
            x, y, r = rng.randrange(size[0]), rng.randrange(size[1]), rng.randrange(20, 160)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randrange(256) for _ in range(3)))
        image.save(folder / f"{i:05d}.jpg", "JPEG", quality=88)
    return sorted(folder.glob("*.jpg"))


def decode(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.size


def draft_decode(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        image.draft("L", (image.width // 2, image.height // 2))
        image.load()
        return image.size


def run_decode(paths: list[Path], workers: int, function: Callable[[str], object] = decode) -> float:
    """Images per second through ``function`` in the pipeline's own process pool (same chunking)."""
    from lora_tasks.intake.scan import parallel_map

    names = [str(p) for p in paths]
    start = time.perf_counter()
    parallel_map(function, names, workers)
    return len(paths) / (time.perf_counter() - start)


def run_intake(folder: Path, count: int, workers: int, antivirus: object) -> float:
    from lora_tasks.intake.filter import filter_manifest
    from lora_tasks.intake.scan import scan_dataset
    from lora_tasks.spec.schema import FilterSection

    work = Path(tempfile.mkdtemp(prefix="intake-bench-"))
    try:
        start = time.perf_counter()
        scan_dataset(str(folder), work / "scan" / "manifest.jsonl", workers=workers)
        result = filter_manifest(work / "scan" / "manifest.jsonl", work / "filter", FilterSection(), "image",
                                 workers=workers, antivirus=antivirus)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(work)
    assert result.summary["kept"] == count, result.summary
    return count / seconds


def main() -> int:
    from contextlib import ExitStack

    from lora_tasks.intake.antivirus import ClamdSocket, ClamScan, NoAntivirus
    from lora_tasks.intake.clamd_daemon import private_clamd

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    workers = len(os.sched_getaffinity(0))
    folder = ROOT / "build" / "bench" / f"jpegs-{args.images}"
    paths = make_jpegs(folder, args.images)
    megapixels = statistics.fmean(w * h for w, h in map(decode, map(str, paths[:50]))) / 1e6
    database = Path(tempfile.mkdtemp()) / "test.hdb"
    database.write_text("44d88612fea8a8f36de82e1278abb02f:68:Test.EICAR\n")
    rates: dict[str, list[float]] = {name: [] for name in ("decode", "draft", "intake", "clamd", "clamd_no_fuzzy",
                                                             "clamscan")}
    with ExitStack() as stack:
        clamd = stack.enter_context(private_clamd(database, Path(tempfile.mkdtemp(prefix="clamd-"))))
        no_fuzzy = stack.enter_context(private_clamd(database, Path(tempfile.mkdtemp(prefix="clamd-")),
                                                     image_fuzzy_hash=False))
        engines = {"clamd": ClamdSocket(clamd), "clamd_no_fuzzy": ClamdSocket(no_fuzzy), "clamscan": ClamScan(database)}
        for _ in range(args.rounds):  # alternating, so drift in the machine's speed hits every column alike
            rates["decode"].append(run_decode(paths, workers))
            rates["intake"].append(run_intake(folder, args.images, workers, NoAntivirus()))
            rates["draft"].append(run_decode(paths, workers, draft_decode))
            for name, engine in engines.items():
                rates[name].append(run_intake(folder, args.images, workers, engine))
    median = {name: statistics.median(values) for name, values in rates.items()}
    intake_rate, draft_rate, decode_rate = median["intake"], median["draft"], median["decode"]

    def rate(value: float) -> str:
        return f"{value:.1f} img/s"

    print("| images | mean size | workers | draft decode only | scan + filter | ratio to draft decode "
          "| Pillow decode only | ratio to full decode |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.images} | {megapixels:.2f} Mpx | {workers} | {rate(draft_rate)} | {rate(intake_rate)} "
          f"| {intake_rate / draft_rate:.3f} | {rate(decode_rate)} | {intake_rate / decode_rate:.3f} |")
    print()
    print("| antivirus (same images) | scan + filter | ratio to antivirus off |")
    print("|---|---|---|")
    print(f"| off | {rate(intake_rate)} | 1.000 |")
    for name, label in (("clamd", "clamd (default with a daemon)"), ("clamd_no_fuzzy", "clamd, no image fuzzy hash"),
                        ("clamscan", "clamscan (no daemon)")):
        print(f"| {label} | {rate(median[name])} | {median[name] / intake_rate:.3f} |")
    target = intake_rate / draft_rate >= 0.70
    print(f"{'ok  ' if target else 'FAIL'} scan + filter >= 0.70 of the draft decode (the same decode: equal work)")
    print(f"ratio_to_full_decode {intake_rate / decode_rate:.3f}")
    print(f"antivirus_ratio {median['clamd'] / intake_rate:.3f}")
    print(f"ratio {intake_rate / draft_rate:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
