"""Which kept images are held out of training, so the evaluate stage measures the adapter on images it
never saw. The choice hashes paths, so every retry of the check stage makes the same one."""

from __future__ import annotations

import hashlib

from lora_tasks.intake.manifest import ManifestRow
from lora_tasks.spec.schema import EvalSection

MIN_IMAGES_FOR_HOLDOUT = 4


def split_holdout(rows: list[ManifestRow], options: EvalSection) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """(train, held out): the held-out rows are those whose path hashes lowest, so retries agree."""
    count = holdout_count(len(rows), options)
    if not count:
        return rows, []
    ranked = sorted(rows, key=lambda r: hashlib.sha256(r.path.encode()).hexdigest())
    held = {r.path for r in ranked[:count]}
    return [r for r in rows if r.path not in held], [r for r in rows if r.path in held]


def holdout_count(total: int, options: EvalSection) -> int:
    """How many of ``total`` samples to hold out: none under MIN_IMAGES_FOR_HOLDOUT, never all."""
    if total < MIN_IMAGES_FOR_HOLDOUT:
        return 0
    return min(total - 1, max(options.holdout_min, round(total * options.holdout_fraction)))
