"""Which kept images are held out of training, so the evaluate stage measures the adapter on images it
never saw. The choice hashes paths, so every retry of the check stage makes the same one."""

from __future__ import annotations

import hashlib

from lora_tasks.intake.manifest import ManifestRow
from lora_tasks.spec.schema import EvalSection

MIN_IMAGES_FOR_HOLDOUT = 4


def split_holdout(rows: list[ManifestRow], options: EvalSection) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """(train, held out): the held-out rows are those whose path hashes lowest, so retries agree."""
    if len(rows) < MIN_IMAGES_FOR_HOLDOUT:
        return rows, []
    count = min(len(rows) - 1, max(options.holdout_min, round(len(rows) * options.holdout_fraction)))
    ranked = sorted(rows, key=lambda r: hashlib.sha256(r.path.encode()).hexdigest())
    held = {r.path for r in ranked[:count]}
    return [r for r in rows if r.path not in held], [r for r in rows if r.path in held]
