"""What a Kubernetes cluster does to capacity that a policy cannot decide: how long a node takes to boot,
how long the cluster autoscaler keeps an unneeded node, and what a preempted training pod loses.

Defaults are a GKE/EKS GPU node pool's usual figures: a boot of about 4 minutes (log-normal spread) with a
tail of slow ones (a cold image pull, a zone short of the machine type); the cluster autoscaler's
``--scale-down-unneeded-time`` of 10 minutes; and a preempted pod that is re-queued, started, pulls its
image, loads the base model and redoes the steps since its last checkpoint (``save_steps`` times the
GPU type's step time).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import timedelta

DEFAULT_STEP_SECONDS = 1.5
"""Seconds a training step on a GPU type the table does not name (SD 1.5, 512 px, batch 4)."""


@dataclass(frozen=True)
class Mechanics:
    boot_median_seconds: float = 240.0
    boot_sigma: float = 0.2
    """Log-normal spread of ordinary boots (0.2: nine in ten within about 3 to 5.5 minutes)."""
    boot_tail_share: float = 0.05
    boot_tail_mean_seconds: float = 480.0
    """A slow boot adds an exponential delay of this mean."""
    scale_down_delay: timedelta = timedelta(minutes=10)
    """An idle node is removed only after it has been unneeded this long (it can take work meanwhile)."""
    preemption: bool = True
    """Whether an interactive job may evict a standard or batch one when no GPU is free."""
    requeue_seconds: float = 15.0
    pod_start_seconds: float = 20.0
    image_pull_seconds: float = 90.0
    model_load_seconds: float = 60.0
    save_steps: int = 500
    step_seconds: dict[str, float] = field(default_factory=lambda: {"a100-80g": 0.9, "a100-40g": 1.0,
                                                                    "h100-80g": 0.6, "l4": 2.4, "a10g": 2.0,
                                                                    "t4": 4.0})
    seed: int = 0

    def boot(self, rng: random.Random) -> timedelta:
        seconds = self.boot_median_seconds * math.exp(rng.gauss(0.0, self.boot_sigma))
        if rng.random() < self.boot_tail_share:
            seconds += rng.expovariate(1.0 / self.boot_tail_mean_seconds)
        return timedelta(seconds=seconds)

    def mean_boot(self) -> timedelta:
        """What the planner should expect a boot to take."""
        ordinary = self.boot_median_seconds * math.exp(self.boot_sigma ** 2 / 2)
        return timedelta(seconds=ordinary + self.boot_tail_share * self.boot_tail_mean_seconds)

    def checkpoint_seconds(self, gpu: str) -> float:
        return self.save_steps * self.step_seconds.get(gpu, DEFAULT_STEP_SECONDS)

    def restart_seconds(self) -> float:
        """What an evicted pod spends before it trains again, its queue wait aside."""
        return self.requeue_seconds + self.pod_start_seconds + self.image_pull_seconds + self.model_load_seconds

    def redone_seconds(self, gpu: str, elapsed: float) -> float:
        """What eviction after ``elapsed`` seconds of training costs the job: the restart, and the work done
        since its last checkpoint (all of it before the first)."""
        return self.restart_seconds() + elapsed % self.checkpoint_seconds(gpu)

