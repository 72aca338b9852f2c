"""Checkpoints: atomic, pruned, exact round trips of optimizer and random states, no pickles."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from lora_tasks.train.checkpoint import (
    Checkpoint,
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)


def trained_optimizer() -> tuple[torch.nn.Parameter, torch.optim.AdamW]:
    param = torch.nn.Parameter(torch.randn(4, 3))
    optimizer = torch.optim.AdamW([param], lr=1e-2)
    for _ in range(3):
        param.grad = torch.randn(4, 3)
        optimizer.step()
    return param, optimizer


def checkpoint(step: int) -> Checkpoint:
    param, optimizer = trained_optimizer()
    rng, host = capture_rng(torch.Generator().manual_seed(step))
    return Checkpoint(step=step, trainable={"w": param.detach()}, optimizer=optimizer.state_dict(),
                      lr_scheduler={"last_epoch": step}, scaler={}, stream={"epoch": 0, "position": step, "order": []},
                      rng=rng, host_rng=host, fingerprint="f")


def test_round_trip_is_exact(tmp_path: Path) -> None:
    original = checkpoint(3)
    loaded = load_checkpoint(save_checkpoint(tmp_path, original, keep=2))
    assert torch.equal(loaded.trainable["w"], original.trainable["w"])
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(loaded.optimizer["state"][0][key], original.optimizer["state"][0][key])
    assert loaded.optimizer["param_groups"][0]["lr"] == original.optimizer["param_groups"][0]["lr"]
    assert loaded.stream == original.stream
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.bin"))


def test_rng_states_continue_identically() -> None:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(1)
    rng, host = capture_rng(generator)
    expected = (torch.randn(3, generator=generator), torch.rand(2), random.random(), np.random.rand())
    restore_rng(generator, rng, host)
    actual = (torch.randn(3, generator=generator), torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(expected[0], actual[0]) and torch.equal(expected[1], actual[1])
    assert expected[2:] == actual[2:]


def test_latest_skips_half_written_and_pruning_keeps_newest(tmp_path: Path) -> None:
    for step in (2, 4, 6):
        save_checkpoint(tmp_path, checkpoint(step), keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000004", "step-00000006"]
    half = tmp_path / "step-00000008"
    half.mkdir()
    (half / "lora.safetensors").write_bytes(b"partial")
    (tmp_path / ".tmp-step-00000010-999").mkdir()
    torn = tmp_path / "step-00000009"
    torn.mkdir()
    (torn / "state.json").write_text('{"step": 9')
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000006"
    save_checkpoint(tmp_path, checkpoint(7), keep=2)
    assert not (tmp_path / ".tmp-step-00000010-999").exists()


def test_saving_the_same_step_twice_replaces_it(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, checkpoint(5), keep=2)
    again = checkpoint(5)
    again.fingerprint = "g"
    save_checkpoint(tmp_path, again, keep=2)
    assert load_checkpoint(tmp_path / "step-00000005").fingerprint == "g"
