"""The trace generator: seeded, the asked length, and each kind shows the traffic it describes."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from lora_tasks.serve.traces import KINDS, _day_curve, _session_length, generate_requests, generate_trace, main


def test_a_seed_repeats_its_trace_and_another_differs() -> None:
    assert generate_trace("mixed", 3000, seed=4) == generate_trace("mixed", 3000, seed=4)
    assert generate_trace("mixed", 3000, seed=4) != generate_trace("mixed", 3000, seed=5)
    assert [len(generate_trace(kind, n, seed=1)) for kind in KINDS for n in (0, 1, 777)] == [0, 1, 777] * len(KINDS)


def test_a_longer_trace_starts_as_the_shorter_one() -> None:
    assert generate_trace("diurnal_new", 5000, seed=2)[:2000] == generate_trace("diurnal_new", 2000, seed=2)


def test_each_request_knows_whether_its_session_comes_back() -> None:
    traced = generate_requests("bursty", 5000, seed=6)
    assert [request.adapter for request in traced] == generate_trace("bursty", 5000, seed=6)
    by_session: dict[int, list[int]] = {}
    for position, request in enumerate(traced):
        by_session.setdefault(request.session, []).append(position)
    for positions in by_session.values():
        assert len({traced[p].adapter for p in positions}) == 1  # a session keeps its adapter
        assert [traced[p].more for p in positions] == [True] * (len(positions) - 1) + [False]
    assert sum(len(p) > 1 for p in by_session.values()) > len(by_session) / 2  # sessions of 5 on average


def test_popularity_is_zipf_like() -> None:
    counts = Counter(generate_trace("zipf", 40_000, seed=0))
    ranked = [count for _, count in counts.most_common()]
    assert ranked[0] > 20 * ranked[len(ranked) // 2]  # r**-0.9: rank 1 against a rank in the thousands
    assert counts["t0/a0"] == ranked[0]


def test_sessions_make_requests_repeat_close_together() -> None:
    def repeats_within(trace: list[str], gap: int) -> float:
        return sum(trace[i] in trace[max(0, i - gap):i] for i in range(len(trace))) / len(trace)

    independent, bursty = generate_trace("zipf", 20_000, seed=0), generate_trace("bursty", 20_000, seed=0)
    assert repeats_within(bursty, 8) > repeats_within(independent, 8) + 0.4


def test_new_adapters_appear_and_one_offs_come_once_or_twice() -> None:
    trace = generate_trace("mixed", 50_000, seed=3)
    counts = Counter(trace)
    one_offs = [adapter for adapter in counts if "/once" in adapter]
    assert len(one_offs) > 1000 and max(counts[a] for a in one_offs) <= 2
    new = [adapter for adapter in counts if "/new" in adapter]
    assert new and max(counts[a] for a in new) > 50  # a new adapter starts among the most requested
    first_seen = {adapter: trace.index(adapter) for adapter in new}
    assert max(first_seen.values()) > len(trace) // 2  # they keep appearing over the trace
    assert len({adapter.split("/")[0] for adapter in counts}) == 8


def test_the_day_curve_and_the_session_lengths() -> None:
    kind = KINDS["diurnal_new"]
    assert _day_curve(kind, 4.0) == pytest.approx(0.2) and _day_curve(kind, 16.0) == pytest.approx(1.0)
    assert _day_curve(KINDS["bursty"], 4.0) == pytest.approx(1.0)
    rng = random.Random(0)
    lengths = [_session_length(kind, rng) for _ in range(20_000)]
    assert min(lengths) == 1 and sum(lengths) / len(lengths) == pytest.approx(kind.burst_mean, rel=0.05)
    assert {_session_length(replace(kind, burst_mean=1.0), rng) for _ in range(100)} == {1}


def test_the_command_writes_one_id_a_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "trace.txt"
    assert main([str(out), "--requests", "500", "--seed", "7", "--kind", "bursty"]) == 0
    assert out.read_text().splitlines() == generate_trace("bursty", 500, seed=7)
    assert "500 requests" in capsys.readouterr().out


def test_the_help_describes_every_kind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    assert all(kind in shown for kind in ("zipf", "bursty", "diurnal_new", "mixed"))
