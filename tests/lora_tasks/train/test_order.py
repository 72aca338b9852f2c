"""Batch order: one bucket per batch, every repeat seen once per epoch, resumable from two integers."""

from __future__ import annotations

from collections import Counter

from lora_tasks.train.order import BatchStream, batches_per_epoch, epoch_batches

BUCKETS = [(64, 64)] * 5 + [(96, 64)] * 3
REPEATS = [2] * 5 + [1] * 3


def test_each_epoch_sees_every_repeat_once_in_single_bucket_batches() -> None:
    batches = epoch_batches(BUCKETS, REPEATS, batch_size=4, seed=1, epoch=0)
    assert Counter(i for b in batches for i in b) == Counter({i: r for i, r in enumerate(REPEATS)})
    assert all(len({BUCKETS[i] for i in b}) == 1 for b in batches)
    assert len(batches) == batches_per_epoch(BUCKETS, REPEATS, 4) == 4


def test_order_depends_only_on_seed_and_epoch() -> None:
    assert epoch_batches(BUCKETS, REPEATS, 2, 7, 3) == epoch_batches(BUCKETS, REPEATS, 2, 7, 3)
    assert epoch_batches(BUCKETS, REPEATS, 2, 7, 3) != epoch_batches(BUCKETS, REPEATS, 2, 7, 4)


def test_stream_resumes_from_its_state() -> None:
    stream = BatchStream(BUCKETS, REPEATS, 3, seed=5)
    for _ in range(7):
        stream.next()
    resumed = BatchStream(BUCKETS, REPEATS, 3, seed=5, **stream.state())
    assert [stream.next() for _ in range(10)] == [resumed.next() for _ in range(10)]
    assert stream.epoch >= 2
