"""Seeded adapter request traces for one serving process, to replay the cache policies on.

A trace is made of sessions: a user picks an adapter and generates a few images with it, one request per
image, with a think time between them; sessions of many users overlap in time, so their requests interleave.
Session starts follow each tenant's working day (a raised-cosine day curve, lowest at 04:00 local time), and
a tenant's users pick its adapters by Zipf popularity (rank r has weight r**-s); adapters published during
the trace start as popular as a top-50 catalog adapter and fade by half every few hours; one-off adapters
are requested once or twice and never again. Times are only used to order the requests; the file holds ids.

    python -m lora_tasks.serve.traces OUT --requests 200000 --seed 1 --kind mixed

The kinds are not tuned to favour any policy; their parameters are in KINDS, each with its reason.
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from lora_tasks.cli import entry_point


@dataclass(frozen=True)
class TraceKind:
    """The parameters of a kind of trace.

    ``peak_requests_per_hour`` is one serving process at full load (about 3.6 s an SDXL image on one GPU);
    ``burst_mean`` is the mean number of images per session (geometric; 1 makes every request independent);
    ``think_seconds`` is the mean gap between a session's requests (exponential): the number of sessions
    interleaving is about the session rate times the session's length in time."""

    name: str
    description: str
    adapters: int = 5000
    tenants: int = 1
    zipf_exponent: float = 0.9
    peak_requests_per_hour: float = 1000.0
    trough_share: float = 1.0
    """The rate at a tenant's 04:00 as a share of its 16:00 peak (1: no day curve)."""
    timezone_spread_hours: float = 0.0
    """The tenants' local times are spread evenly over this many hours."""
    burst_mean: float = 1.0
    think_seconds: float = 30.0
    publishes_per_day: float = 0.0
    new_half_life_hours: float = 12.0
    one_off_share: float = 0.0
    """The share of sessions on a one-off adapter (requested once or twice in that session, then never)."""


KINDS: dict[str, TraceKind] = {kind.name: kind for kind in (
    TraceKind("zipf", "independent requests, Zipf 0.9 over 5000 adapters, flat rate, no churn: the textbook "
              "independent reference model, a reference rather than image-generation traffic (no sessions)"),
    TraceKind("bursty", "one tenant, Zipf 0.9 over 5000 adapters, flat rate, sessions of 5 images on average "
              "with 30 s think time", burst_mean=5.0),
    TraceKind("diurnal_new", "8 tenants over 16 time-zone hours, Zipf 1.0 over 5000 adapters, night rate 20% "
              "of the peak, sessions of 4 images, 40 adapters published a day (half-life 12 h)",
              tenants=8, zipf_exponent=1.0, trough_share=0.2, timezone_spread_hours=16.0, burst_mean=4.0,
              publishes_per_day=40.0),
    TraceKind("mixed", "8 tenants over 12 time-zone hours, Zipf 0.9 over 8000 adapters, night rate 20%, "
              "sessions of 5 images, 40 publishes a day (half-life 8 h), 15% of sessions on one-off adapters",
              adapters=8000, tenants=8, trough_share=0.2, timezone_spread_hours=12.0, burst_mean=5.0,
              publishes_per_day=40.0, new_half_life_hours=8.0, one_off_share=0.15),
)}

NEW_PEAK_RANK = 50
"""A new adapter starts as popular as a catalog adapter of rank log-uniform in [1, NEW_PEAK_RANK]."""
NEW_LIFETIME_HALF_LIVES = 8
"""After this many half-lives (under 0.4% of its peak) a new adapter is no longer requested."""


@dataclass
class _Tenant:
    """A tenant's catalog (cumulative Zipf weights), its share of the traffic and its adapters in launch."""

    name: str
    share: float
    offset_hours: float
    catalog: list[str]
    cumulative: list[float]
    launched: list[tuple[str, float, float]]  # (id, publish hour, peak weight)


def _tenants(kind: TraceKind) -> list[_Tenant]:
    """Tenants' traffic shares fall as 1/rank; each gets a part of the catalog in proportion."""
    shares = [1.0 / (rank + 1) for rank in range(kind.tenants)]
    total = sum(shares)
    tenants = []
    for index, share in enumerate(shares):
        name = f"t{index}"
        size = max(1, round(kind.adapters * share / total))
        weights = [(rank + 1) ** -kind.zipf_exponent for rank in range(size)]
        offset = kind.timezone_spread_hours * index / kind.tenants
        tenants.append(_Tenant(name, share / total, offset, [f"{name}/a{rank}" for rank in range(size)],
                               list(accumulate(weights)), []))
    return tenants


def _day_curve(kind: TraceKind, local_hour: float) -> float:
    """The session rate as a share of the peak: lowest at 04:00, highest at 16:00."""
    phase = (1 - math.cos(2 * math.pi * (local_hour - 4) / 24)) / 2
    return kind.trough_share + (1 - kind.trough_share) * phase


def _session_length(kind: TraceKind, rng: random.Random) -> int:
    """Geometric on 1, 2, ... with mean ``burst_mean``."""
    if kind.burst_mean <= 1:
        return 1
    stop = 1 / kind.burst_mean
    return 1 + int(math.log(1 - rng.random()) / math.log(1 - stop))


class _Generator:
    """Session arrivals by thinning a Poisson process at the peak rate; publishes by their own process."""

    def __init__(self, kind: TraceKind, seed: int) -> None:
        self.kind = kind
        self.rng = random.Random(seed)
        self.tenants = _tenants(kind)
        per_session = (1 - kind.one_off_share) * max(1.0, kind.burst_mean) + kind.one_off_share * 1.5
        self.sessions_per_hour = kind.peak_requests_per_hour / per_session
        self.hour = 0.0
        self.next_publish = self._publish_gap()
        self.published = 0
        self.one_offs = 0

    def _publish_gap(self) -> float:
        rate = self.kind.publishes_per_day / 24
        return self.rng.expovariate(rate) if rate > 0 else math.inf

    def next_session(self) -> tuple[float, list[str]]:
        """The start hour of the next session and its requests' adapter ids (one per image)."""
        rng = self.rng
        while True:
            self.hour += rng.expovariate(self.sessions_per_hour)
            while self.next_publish <= self.hour:
                self._publish(self.next_publish)
                self.next_publish += self._publish_gap()
            rates = [t.share * _day_curve(self.kind, (self.hour + t.offset_hours) % 24) for t in self.tenants]
            if rng.random() < sum(rates):
                break
        tenant = rng.choices(self.tenants, weights=rates)[0]
        if rng.random() < self.kind.one_off_share:
            self.one_offs += 1
            return self.hour, [f"{tenant.name}/once{self.one_offs}"] * rng.choice((1, 2))
        return self.hour, [self._pick(tenant)] * _session_length(self.kind, rng)

    def _publish(self, hour: float) -> None:
        tenant = self.rng.choices(self.tenants, weights=[t.share for t in self.tenants])[0]
        rank = math.exp(self.rng.random() * math.log(NEW_PEAK_RANK))
        self.published += 1
        tenant.launched.append((f"{tenant.name}/new{self.published}", hour, rank ** -self.kind.zipf_exponent))

    def _pick(self, tenant: _Tenant) -> str:
        """An adapter by current popularity: the catalog's Zipf weights and the new adapters' fading ones."""
        half_life = self.kind.new_half_life_hours
        tenant.launched = [a for a in tenant.launched
                           if self.hour - a[1] < NEW_LIFETIME_HALF_LIVES * half_life]
        fresh = [peak * 0.5 ** ((self.hour - hour) / half_life) for _, hour, peak in tenant.launched]
        catalog_weight = tenant.cumulative[-1]
        draw = self.rng.random() * (catalog_weight + sum(fresh))
        if draw < catalog_weight:
            return tenant.catalog[min(bisect.bisect_right(tenant.cumulative, draw), len(tenant.catalog) - 1)]
        return self.rng.choices([a[0] for a in tenant.launched], weights=fresh)[0]

    def think(self) -> float:
        """Hours until a session's next request."""
        return self.rng.expovariate(3600 / self.kind.think_seconds)


@dataclass(frozen=True)
class TracedRequest:
    """A request with what only the generator knows: its session, and whether that session requests the
    same adapter again later in the trace (which no server can know; bench/serve_cache.py's session oracle
    is given it to bound what any online policy could reach)."""

    adapter: str
    session: int
    more: bool


def generate_requests(kind: TraceKind | str, requests: int, seed: int = 0) -> list[TracedRequest]:
    """The first ``requests`` requests of a trace of this kind, in time order, with their sessions."""
    kind = KINDS[kind] if isinstance(kind, str) else kind
    if requests < 0:
        raise ValueError(f"requests must not be negative, not {requests}")
    generator = _Generator(kind, seed)
    timed: list[tuple[float, int, str, int]] = []
    cutoff = math.inf
    sessions = 0
    while True:
        start, session = generator.next_session()
        if start > cutoff:  # every request before the cutoff is from a session that has started
            break
        at = start
        for adapter in session:
            timed.append((at, len(timed), adapter, sessions))
            at += generator.think()
        sessions += 1
        if cutoff == math.inf and len(timed) >= requests:
            cutoff = sorted(timed)[requests - 1][0] if requests else 0.0
    kept = sorted(timed)[:requests]
    later: set[int] = set()  # sessions with a request after this one
    traced = []
    for _, _, adapter, session in reversed(kept):
        traced.append(TracedRequest(adapter, session, session in later))
        later.add(session)
    return traced[::-1]


def generate_trace(kind: TraceKind | str, requests: int, seed: int = 0) -> list[str]:
    """The first ``requests`` requests (adapter ids, in time order) of a trace of this kind."""
    return [request.adapter for request in generate_requests(kind, requests, seed)]


def write_trace(path: Path, requests: list[str]) -> Path:
    """One adapter id per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{adapter}\n" for adapter in requests))
    return path


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.serve.traces", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the file to write, one adapter id per line")
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=KINDS, default="mixed",
                        help="; ".join(f"{k.name}: {k.description}" for k in KINDS.values()).replace("%", "%%"))
    args = parser.parse_args(argv)
    trace = generate_trace(args.kind, args.requests, args.seed)
    write_trace(args.out, trace)
    print(f"{len(trace)} requests for {len(set(trace))} adapters ({args.kind}, seed {args.seed}) in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
