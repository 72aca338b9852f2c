"""What a request costs on top of the generation itself, by where its adapter is.

On one random-weight pipeline (the tiny one, or the Stable Diffusion 1.5 architecture), through the
service's own path (``AdapterService.generate``: registry lookup, cache tiers, the pipeline's lock,
the PNG), each round times, interleaved:

- ``base``: the same generation on a second pipeline that never had an adapter (no LoRA layers at all),
  PNG included: the floor every other row is compared with;
- ``pipeline-cached``: an adapter already loaded into the model but not the active one (the previous
  request used another), so ``set_adapters`` switches it: what a warm server does between tenants;
- ``pipeline-active``: the same adapter again right after (no switch): what the LoRA layers alone cost;
- ``ram-cached``: an adapter pushed out of the pipeline tier but still in host RAM: loaded into the model
  again (``load_lora_weights``), with an eviction (``delete_adapters``) to make room;
- ``uncached``: an adapter never requested: read from the artifact store, sha256-checked against its
  manifest, kept in RAM, loaded into the model, with an eviction;
- ``reload``: what a server without a cache does: ``StableDiffusionPipeline.from_pretrained``, then
  ``load_lora_weights`` of the adapter's file, then the generation.

Overhead is a row's median minus ``base``'s median. Targets: pipeline-cached overhead < 5% of ``base``;
uncached overhead < 20% of the reload's overhead. The last lines read ``cached <percent>`` and
``uncached <percent>``.

    python bench/serve_switch.py [--model tiny|sd15] [--rounds 9] [--steps 20] [--rank 8] [--slots 4]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIZES = {"tiny": 64, "sd15": 128}
CACHED_TARGET = 5.0
UNCACHED_TARGET = 20.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--slots", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    try:
        medians, adapter_mb = measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args, medians, adapter_mb)
    return 0


def measure(args: argparse.Namespace, work: Path) -> tuple[dict[str, float], float]:
    import diffusers
    import torch
    import transformers
    from diffusers import StableDiffusionPipeline

    from lora_tasks.ledger.store import open_ledger
    from lora_tasks.serve.engine import Engine, GenerationParams, png_bytes
    from lora_tasks.serve.service import AdapterService
    from lora_tasks.serve.settings import ServeSettings
    from lora_tasks.settings import PlatformSettings
    from lora_tasks.stores import open_store
    from lora_tasks.stores.versions import publish_version, version_prefix
    from lora_tasks.tiny.diffusion import save_pipeline
    from lora_tasks.tiny.lora import lora_shapes, save_random_lora
    from lora_tasks.train.outputs import DIFFUSERS_FILE

    for library in (diffusers, transformers):  # the table, not a warning per load
        library.utils.logging.set_verbosity_error()
        library.utils.logging.disable_progress_bar()
    base_dir = save_pipeline(work / "model", args.model, seed=0)
    platform = PlatformSettings(artifact_root=str(work / "artifacts"), ledger_url=f"sqlite:///{work / 'ledger.db'}")
    ledger, store, shapes = open_ledger(platform.ledger_url), open_store(platform.artifact_root), lora_shapes(base_dir)
    now = datetime.now(UTC)
    files: dict[str, Path] = {}

    def publish(name: str, seed: int) -> str:
        weights = save_random_lora(work / "exports" / name, shapes, seed, args.rank)
        version = ledger.reserve_adapter_version("bench", name, f"run-{name}", base_model=str(base_dir),
                                                 formats=["diffusers"], created_at=now)
        publish_version(store, "bench", name, f"v{version}", files={DIFFUSERS_FILE: weights}, metadata={})
        ledger.mark_adapter_published("bench", name, version, figures={}, public=False, published_at=now,
                                      uri=store.uri_of(version_prefix("bench", name, f"v{version}")))
        files[name] = weights
        return name

    warm = [publish(f"warm-{i}", i) for i in range(args.slots)]
    spare = publish("spare", 1000)
    fresh = [publish(f"fresh-{r}", 2000 + r) for r in range(args.rounds + 1)]
    settings = ServeSettings(base_model=base_dir, pipeline_slots=args.slots)
    service = AdapterService(settings, platform, Engine(base_dir))
    plain = Engine(base_dir)
    size = SIZES[args.model]
    params = GenerationParams(prompt="sks, a teal circle on a white background", seed=0, steps=args.steps,
                              width=size, height=size)

    def reload(name: str) -> None:
        pipe = StableDiffusionPipeline.from_pretrained(base_dir, safety_checker=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        pipe.load_lora_weights(str(files[name].parent), weight_name=DIFFUSERS_FILE)
        generator = torch.Generator("cpu").manual_seed(params.seed)
        png_bytes(pipe(prompt=params.prompt, num_inference_steps=params.steps, guidance_scale=params.guidance,
                       width=size, height=size, generator=generator).images[0])

    def request(name: str) -> None:
        service.generate("bench", name, params)

    def evict_spare() -> None:
        """The spare adapter in RAM, out of the pipeline: the warm ones fill every slot after it."""
        for name in warm:
            request(name)

    def expect(name: str, tier: str | None) -> Callable[[], None]:
        key = f"bench/{name}@1"

        def check() -> None:
            where = "pipeline" if key in service.pipeline else "ram" if key in service.ram else None
            assert where == tier, f"{key} is in {where}, the bench meant {tier}"
        return check

    request(spare)
    request(fresh[-1])  # first use of each code path happens before timing
    reload(spare)
    plain.generate(None, params)
    seconds: dict[str, list[float]] = {k: [] for k in ("base", "pipeline-cached", "pipeline-active", "ram-cached",
                                                       "uncached", "reload")}
    for target, new in zip(itertools.islice(itertools.cycle(warm), args.rounds), fresh, strict=False):
        evict_spare()
        request(next(name for name in warm if name != target))  # another one active: the cached one switches
        steps: list[tuple[str, Callable[[], None], Callable[[], None]]] = [
            ("base", expect(spare, "ram"), lambda: png_bytes(plain.generate(None, params))),
            ("pipeline-cached", expect(target, "pipeline"), functools.partial(request, target)),
            ("pipeline-active", expect(target, "pipeline"), functools.partial(request, target)),
            ("ram-cached", expect(spare, "ram"), lambda: request(spare)),
            ("uncached", expect(new, None), functools.partial(request, new)),
            ("reload", lambda: None, lambda: reload(spare)),
        ]
        for name, check, run in steps:
            check()
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    adapter_mb = files[spare].stat().st_size / 2**20
    return {name: statistics.median(values) for name, values in seconds.items()}, adapter_mb


def report(args: argparse.Namespace, medians: dict[str, float], adapter_mb: float) -> None:
    base = medians["base"]
    print(f"model {args.model}, {SIZES[args.model]} px, {args.steps} steps, LoRA rank {args.rank} "
          f"({adapter_mb:.1f} MiB file), {args.slots} pipeline slots, median of {args.rounds} interleaved rounds")
    print("| request | median | overhead over base | overhead / base | overhead / reload's overhead |")
    print("|---|---|---|---|---|")
    reload_overhead = medians["reload"] - base
    for name, value in medians.items():
        over = value - base
        print(f"| {name} | {value * 1000:.1f} ms | {over * 1000:+.1f} ms | {100 * over / base:+.1f}% | "
              f"{100 * over / reload_overhead:+.1f}% |")
    cached = 100 * (medians["pipeline-cached"] - base) / base
    uncached = 100 * (medians["uncached"] - base) / reload_overhead
    print(f"pipeline-cached overhead {cached:.1f}% of base (target < {CACHED_TARGET:.0f}%): "
          f"{'ok' if cached < CACHED_TARGET else 'FAIL'}")
    print(f"uncached overhead {uncached:.1f}% of a reload's (target < {UNCACHED_TARGET:.0f}%): "
          f"{'ok' if uncached < UNCACHED_TARGET else 'FAIL'}")
    print(f"cached {cached:.1f}")
    print(f"uncached {uncached:.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
