"""The held-out split: stable across retries, and honest when a dataset is too small for one."""

from __future__ import annotations

from lora_tasks.intake.holdout import split_holdout
from lora_tasks.intake.manifest import ManifestRow
from lora_tasks.spec.schema import EvalSection


def rows(n: int) -> list[ManifestRow]:
    return [ManifestRow(path=f"img_{i:03d}.png", source=f"file:///d/img_{i:03d}.png") for i in range(n)]


def test_the_split_depends_on_paths_only() -> None:
    train, held = split_holdout(rows(40), EvalSection())
    _, again_held = split_holdout(list(reversed(rows(40))), EvalSection())
    assert {r.path for r in held} == {r.path for r in again_held} and len(held) == max(EvalSection().holdout_min, 4)
    assert not {r.path for r in train} & {r.path for r in held} and len(train) + len(held) == 40


def test_too_few_images_hold_none_out() -> None:
    train, held = split_holdout(rows(3), EvalSection())
    assert len(train) == 3 and held == []
