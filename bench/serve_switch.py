"""What a request costs on top of the generation itself, by where its adapter is.

On one random-weight pipeline (the tiny one, or the Stable Diffusion 1.5 architecture), through the
service's own path (``AdapterService.generate``: registry lookup, cache tiers, the pipeline's lock,
the PNG), each round times, interleaved:

- ``base``: the same generation on a second pipeline that never had an adapter (no LoRA layers at all),
  PNG included: the floor every other row is compared with;
- ``pipeline-cached``: an adapter already loaded into the model but not the active one (the previous
  request used another), so ``set_adapters`` switches it: what a warm server does between tenants;
- ``pipeline-active``: the same adapter again right after (no switch): what the LoRA layers alone cost;
- ``ram-cached``: an adapter pushed out of the pipeline tier but still in host RAM, copied into the
  evicted adapter's layers (hotswap);
- ``uncached``: an adapter never requested: read from the artifact store, sha256-checked against its
  manifest, kept in RAM, copied into the evicted adapter's layers;
- ``uncached-inject``: the same on a service with ``hotswap`` off: the evicted adapter is deleted
  (``delete_adapters``) and the new one injected as new layers (``load_lora_weights``' path);
- ``reload``: what a server without a cache does: ``StableDiffusionPipeline.from_pretrained``, then
  ``load_lora_weights`` of the adapter's file, then the generation.

Two figures per row. ``overhead``: the median over rounds of the row's time minus ``base``'s in the same
round (generation noise included). ``before generating``: the row's time minus the time spent inside the
generation call (the service's own ``lora_serve_generate_seconds``, or the reload's timed pipeline call),
i.e. what the adapter's path costs, without the generation's noise. Targets: pipeline-cached overhead
< 5% of ``base``; uncached < 20% of a reload, compared by time before generating (both then run the
same generation with one LoRA active). The last lines read ``cached <percent>`` and ``uncached <percent>``.

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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIZES = {"tiny": 64, "sd15": 128}
CACHED_TARGET = 5.0
UNCACHED_TARGET = 20.0
ROWS = ("base", "pipeline-cached", "pipeline-active", "ram-cached", "uncached", "uncached-inject", "reload")


@dataclass(frozen=True)
class Sample:
    seconds: float
    """The whole request."""
    generating: float
    """Inside the generation call."""


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
        samples, adapter_mb = measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args, samples, adapter_mb)
    return 0


def measure(args: argparse.Namespace, work: Path) -> tuple[dict[str, list[Sample]], float]:
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
    fresh_inject = [publish(f"inject-{r}", 3000 + r) for r in range(args.rounds + 1)]
    size = SIZES[args.model]
    params = GenerationParams(prompt="sks, a teal circle on a white background", seed=0, steps=args.steps,
                              width=size, height=size)
    quick = GenerationParams(prompt=params.prompt, seed=0, steps=1, width=64, height=64)
    services = {hotswap: AdapterService(ServeSettings(base_model=base_dir, pipeline_slots=args.slots,
                                                      hotswap=hotswap), platform)
                for hotswap in (True, False)}
    service, injecting = services[True], services[False]
    plain = Engine(base_dir)

    def generated_seconds(on: AdapterService) -> float:
        return on.metrics.registry.get_sample_value("lora_serve_generate_seconds_sum") or 0.0

    def request(name: str, on: AdapterService = service, asked: GenerationParams = params) -> float:
        """Seconds spent inside the generation call."""
        before = generated_seconds(on)
        on.generate("bench", name, asked)
        return generated_seconds(on) - before

    def base() -> float:
        started = time.perf_counter()
        image = plain.generate(None, params)
        generating = time.perf_counter() - started
        png_bytes(image)
        return generating

    def reload(name: str) -> float:
        pipe = StableDiffusionPipeline.from_pretrained(base_dir, safety_checker=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        pipe.load_lora_weights(str(files[name].parent), weight_name=DIFFUSERS_FILE)
        generator = torch.Generator("cpu").manual_seed(params.seed)
        started = time.perf_counter()
        image = pipe(prompt=params.prompt, num_inference_steps=params.steps, guidance_scale=params.guidance,
                     width=size, height=size, generator=generator).images[0]
        generating = time.perf_counter() - started
        png_bytes(image)
        return generating

    def fill(on: AdapterService) -> None:
        """The warm adapters in every slot: the spare (if loaded) back in RAM only (one small step each: only
        where the adapters are matters)."""
        for name in warm:
            request(name, on, quick)

    def expect(name: str, tier: str | None, on: AdapterService = service) -> Callable[[], None]:
        key = f"bench/{name}@1"

        def check() -> None:
            where = "pipeline" if key in on.pipeline else "ram" if key in on.ram else None
            assert where == tier, f"{key} is in {where}, the bench meant {tier}"
        return check

    for on in services.values():  # first use of each code path happens before timing
        request(spare, on)
        fill(on)
    request(fresh[-1])
    request(fresh_inject[-1], injecting)
    reload(spare)
    base()
    samples: dict[str, list[Sample]] = {k: [] for k in ROWS}
    rounds = zip(itertools.islice(itertools.cycle(warm), args.rounds), fresh, fresh_inject, strict=False)
    for target, new, new_inject in rounds:
        fill(service)
        fill(injecting)
        request(next(name for name in warm if name != target), service, quick)  # the target is not the active one
        steps: list[tuple[str, Callable[[], None], Callable[[], float]]] = [
            ("base", expect(spare, "ram"), base),
            ("pipeline-cached", expect(target, "pipeline"), functools.partial(request, target)),
            ("pipeline-active", expect(target, "pipeline"), functools.partial(request, target)),
            ("ram-cached", expect(spare, "ram"), functools.partial(request, spare)),
            ("uncached", expect(new, None), functools.partial(request, new)),
            ("uncached-inject", expect(new_inject, None, injecting), functools.partial(request, new_inject, injecting)),
            ("reload", lambda: None, functools.partial(reload, spare)),
        ]
        for name, check, run in steps:
            check()
            started = time.perf_counter()
            generating = run()
            samples[name].append(Sample(time.perf_counter() - started, generating))
    adapter_mb = files[spare].stat().st_size / 2**20
    assert service.engine.fuser is not None
    print(f"folding the active adapter keeps {service.engine.fuser.kept_bytes / 2**20:.1f} MiB of base weights")
    return samples, adapter_mb


def report(args: argparse.Namespace, samples: dict[str, list[Sample]], adapter_mb: float) -> None:
    print(f"model {args.model}, {SIZES[args.model]} px, {args.steps} steps, LoRA rank {args.rank} "
          f"({adapter_mb:.1f} MiB file), {args.slots} pipeline slots, median of {args.rounds} interleaved rounds")
    print("| request | median | overhead / base | before generating | before generating / reload's |")
    print("|---|---|---|---|---|")
    base = statistics.median(s.seconds for s in samples["base"])
    before = {name: statistics.median(s.seconds - s.generating for s in rows) for name, rows in samples.items()}
    overhead = {name: statistics.median(s.seconds - b.seconds for s, b in zip(rows, samples["base"], strict=True))
                for name, rows in samples.items()}
    for name, rows in samples.items():
        median = statistics.median(s.seconds for s in rows)
        print(f"| {name} | {median * 1000:.1f} ms | {100 * overhead[name] / base:+.1f}% | "
              f"{before[name] * 1000:.1f} ms | {100 * before[name] / before['reload']:.1f}% |")
    cached = 100 * overhead["pipeline-cached"] / base
    uncached = 100 * before["uncached"] / before["reload"]
    print(f"pipeline-cached overhead {cached:.1f}% of base (target < {CACHED_TARGET:.0f}%): "
          f"{'ok' if cached < CACHED_TARGET else 'FAIL'}")
    print(f"uncached {uncached:.1f}% of a reload before generating (target < {UNCACHED_TARGET:.0f}%): "
          f"{'ok' if uncached < UNCACHED_TARGET else 'FAIL'}; without hotswap "
          f"{100 * before['uncached-inject'] / before['reload']:.1f}%")
    print(f"cached {cached:.1f}")
    print(f"uncached {uncached:.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
