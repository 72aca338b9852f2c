"""The order in which images are seen: per epoch, shuffled, one bucket per batch.

The order of epoch ``e`` depends only on (seed, e), and the stream's position is two
integers, so a resumed run continues with exactly the batches the interrupted one would
have drawn.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import torch

from lora_tasks.train.buckets import Size


def epoch_batches(buckets: list[Size], repeats: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Item indices grouped into batches of one bucket each; batch order and contents shuffled."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    by_bucket: dict[Size, list[int]] = {}
    for index, (bucket, times) in enumerate(zip(buckets, repeats, strict=True)):
        by_bucket.setdefault(bucket, []).extend([index] * times)
    batches: list[list[int]] = []
    for bucket in sorted(by_bucket):
        members = by_bucket[bucket]
        shuffled = [members[i] for i in torch.randperm(len(members), generator=generator).tolist()]
        batches.extend(shuffled[i:i + batch_size] for i in range(0, len(shuffled), batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def samples_per_bucket(buckets: list[Size], repeats: list[int]) -> Counter[Size]:
    """Samples an epoch in each bucket (repeats counted): the most a batch of that bucket can hold."""
    per_bucket: Counter[Size] = Counter()
    for bucket, times in zip(buckets, repeats, strict=True):
        per_bucket[bucket] += times
    return per_bucket


def batches_per_epoch(buckets: list[Size], repeats: list[int], batch_size: int) -> int:
    return sum(math.ceil(n / batch_size) for n in samples_per_bucket(buckets, repeats).values())


@dataclass
class BatchStream:
    """An endless stream of micro-batches across epochs, with a resumable position."""

    buckets: list[Size]
    repeats: list[int]
    batch_size: int
    seed: int
    epoch: int = 0
    position: int = 0
    order: list[list[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.order:
            self.order = epoch_batches(self.buckets, self.repeats, self.batch_size, self.seed, self.epoch)

    def next(self) -> list[int]:
        if self.position >= len(self.order):
            self.epoch += 1
            self.position = 0
            self.order = epoch_batches(self.buckets, self.repeats, self.batch_size, self.seed, self.epoch)
        batch = self.order[self.position]
        self.position += 1
        return batch

    def state(self) -> dict[str, object]:
        return {"epoch": self.epoch, "position": self.position, "order": self.order}
