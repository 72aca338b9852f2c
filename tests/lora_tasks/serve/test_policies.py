"""The eviction policies against their contract and each other's strengths, and Belady's optimum against a
brute-force search and every policy."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_tasks.serve.belady import next_uses, optimal_hits
from lora_tasks.serve.policies import POLICIES, FrequencySketch, make_policy
from lora_tasks.serve.replay import pipeline_misses

NAMES = sorted(POLICIES)
OPERATIONS = st.lists(st.tuples(st.sampled_from(["insert", "hit", "evict", "discard"]), st.integers(0, 11)),
                      max_size=120)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=150, deadline=None)
@given(operations=OPERATIONS, slots=st.integers(1, 6))
def test_policy_keeps_the_contract_under_any_sequence(name: str, operations: list[tuple[str, int]],
                                                      slots: int) -> None:
    policy, resident, newest = make_policy(name, slots), set(), None
    for operation, number in operations:
        key = f"k{number}"
        if operation == "insert" and key not in resident:
            policy.insert(key)
            resident.add(key)
            newest = key
        elif operation == "hit" and key in resident:
            policy.hit(key)
        elif operation == "discard":
            policy.discard(key)
            resident.discard(key)
        elif operation == "evict":
            if not resident:
                with pytest.raises(KeyError):
                    policy.evict()
                continue
            victim = policy.evict()
            assert victim in resident
            assert victim != newest or resident == {newest}, "evicted the key inserted last while others stayed"
            resident.remove(victim)
        assert len(policy) == len(resident)
        assert all(f"k{n}" in policy for n in range(12) if f"k{n}" in resident)
        assert not any(f"k{n}" in policy for n in range(12) if f"k{n}" not in resident)


def test_lru_evicts_the_least_recently_used() -> None:
    lru = make_policy("lru", 3)
    for key in "abc":
        lru.insert(key)
    lru.hit("a")
    lru.insert("d")
    assert [lru.evict(), lru.evict(), lru.evict(), lru.evict()] == ["b", "c", "a", "d"]


def test_lfu_evicts_the_least_frequently_used() -> None:
    lfu = make_policy("lfu", 3)
    for key in "abc":
        lfu.insert(key)
    for key in "aac":
        lfu.hit(key)
    lfu.insert("d")
    assert lfu.evict() == "b"  # as few uses as d, which was inserted last
    assert [lfu.evict(), lfu.evict(), lfu.evict()] == ["c", "a", "d"]  # d stays while it is the newest


def test_unknown_policy_names_the_choices() -> None:
    with pytest.raises(ValueError, match="lru, lfu, arc, tinylfu"):
        make_policy("fifo", 4)


def scan_polluted(hot: int, rounds: int, scan: int) -> list[str]:
    """A hot set requested over and over, each round followed by a scan of keys never seen again."""
    requests: list[str] = []
    for round_ in range(rounds):
        requests += [f"hot{i}" for i in range(hot)] * 3
        requests += [f"scan{round_}-{i}" for i in range(scan)]
    return requests


@pytest.mark.parametrize("name", ["arc", "tinylfu"])
def test_frequency_aware_policies_keep_the_hot_set_through_scans(name: str) -> None:
    requests = scan_polluted(hot=5, rounds=40, scan=20)
    lru_hits = len(requests) - len(pipeline_misses(requests, "lru", 8))
    hits = len(requests) - len(pipeline_misses(requests, name, 8))
    assert hits > 1.4 * lru_hits, (name, hits, lru_hits)


def test_the_sketch_estimates_at_least_the_count_and_ages() -> None:
    sketch = FrequencySketch(width=64, sample_size=1000)
    for _ in range(9):
        sketch.increment("popular")
    sketch.increment("rare")
    assert sketch.estimate("popular") >= 9 and sketch.estimate("rare") >= 1
    sketch.sample_size = 11  # the next increment reaches the sample: every counter is halved
    sketch.increment("rare")
    assert sketch.estimate("popular") == 4
    assert FrequencySketch(width=8, sample_size=10**6).estimate("never") == 0


def brute_force_hits(requests: Sequence[str], slots: int) -> int:
    """The most hits over every choice of victim (demand paging: a miss is loaded, evict only when full)."""

    @functools.cache
    def best(position: int, resident: frozenset[str]) -> int:
        if position == len(requests):
            return 0
        key = requests[position]
        if key in resident:
            return 1 + best(position + 1, resident)
        if len(resident) < slots:
            return best(position + 1, resident | {key})
        return max(best(position + 1, (resident - {victim}) | {key}) for victim in resident)

    return best(0, frozenset())


@settings(max_examples=200, deadline=None)
@given(requests=st.lists(st.sampled_from("abcdef"), max_size=12), slots=st.integers(2, 3))
def test_belady_matches_a_brute_force_search(requests: list[str], slots: int) -> None:
    assert optimal_hits(requests, slots) == brute_force_hits(requests, slots)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=60, deadline=None)
@given(requests=st.lists(st.integers(0, 9).map(str), max_size=80), slots=st.integers(1, 4))
def test_no_policy_beats_belady(name: str, requests: list[str], slots: int) -> None:
    assert len(requests) - len(pipeline_misses(requests, name, slots)) <= optimal_hits(requests, slots)


def test_belady_on_a_known_sequence() -> None:
    requests = list("abcadbeab")
    assert next_uses(requests) == [3, 5, 9, 7, 9, 8, 9, 9, 9]
    assert optimal_hits(requests, 2) == brute_force_hits(requests, 2) == 2
    assert optimal_hits(requests, 5) == 4  # only first requests miss
    with pytest.raises(ValueError, match="at least 1"):
        optimal_hits(requests, 0)
