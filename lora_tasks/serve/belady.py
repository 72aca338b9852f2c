"""Belady's MIN: the most hits any policy can get on a known request sequence, the yardstick for the online ones.

Same model as the serving tiers: a missed key is always loaded, and a full tier (``slots`` entries) first
evicts the resident key whose next request is furthest away (never requested again counts as furthest).
Among demand-paging policies (evict only to make room, never bypass) this is optimal; letting a miss bypass
the tier would be a different model with its own optimum.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence


def next_uses(requests: Sequence[str]) -> list[int]:
    """For each position, where the same key is requested next (``len(requests)`` when never again)."""
    never = len(requests)
    following: dict[str, int] = {}
    result = [never] * never
    for position in range(never - 1, -1, -1):
        key = requests[position]
        result[position] = following.get(key, never)
        following[key] = position
    return result


def optimal_hits(requests: Sequence[str], slots: int) -> int:
    """Belady's hit count in O(n log n): a max-heap on next use, whose stale entries (a key requested again
    since, or evicted) are skipped when popped."""
    if slots < 1:
        raise ValueError(f"slots must be at least 1, not {slots}")
    resident: dict[str, int] = {}  # key -> position of its next request
    furthest: list[tuple[int, str]] = []  # (-next use, key), stale entries included
    hits = 0
    for key, upcoming in zip(requests, next_uses(requests), strict=True):
        if key in resident:
            hits += 1
        elif len(resident) >= slots:
            while True:
                negative, victim = heapq.heappop(furthest)
                if resident.get(victim) == -negative:
                    del resident[victim]
                    break
        resident[key] = upcoming
        heapq.heappush(furthest, (-upcoming, key))
    return hits
