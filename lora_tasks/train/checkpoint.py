"""Atomic, exactly-resumable training checkpoints, in safetensors and JSON only.

A checkpoint is a folder ``step-00000120/`` holding the LoRA weights, the optimizer's
tensors, the random number generators and ``state.json`` (step, data order, scheduler,
optimizer hyper-parameters). It is written under a temporary name and renamed into place
once complete, so a process killed mid-write leaves only a ``.tmp-*`` folder that resume
ignores and the next save removes. Nothing here is pickled.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

CHECKPOINT_NAME = re.compile(r"^step-(\d{8})$")
STATE_FILE = "state.json"
TENSOR_FILES = ("lora.safetensors", "optimizer.safetensors", "rng.safetensors")


@dataclass
class Checkpoint:
    """Everything needed to continue a run exactly where a checkpoint left it."""

    step: int
    trainable: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    lr_scheduler: dict[str, Any]
    scaler: dict[str, Any]
    stream: dict[str, Any]
    rng: dict[str, torch.Tensor]
    host_rng: dict[str, Any]
    fingerprint: str


def save_checkpoint(folder: Path, ckpt: Checkpoint, keep: int) -> Path:
    """Write ``ckpt`` atomically under ``folder`` and keep only the newest ``keep`` checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{ckpt.step:08d}"
    tmp = folder / f".tmp-step-{ckpt.step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    optimizer_tensors, optimizer_meta = _flatten_optimizer(ckpt.optimizer)
    _write_tensors(tmp / "lora.safetensors", ckpt.trainable)
    _write_tensors(tmp / "optimizer.safetensors", optimizer_tensors)
    _write_tensors(tmp / "rng.safetensors", ckpt.rng)
    state = {
        "step": ckpt.step,
        "stream": ckpt.stream,
        "lr_scheduler": ckpt.lr_scheduler,
        "scaler": ckpt.scaler,
        "optimizer": optimizer_meta,
        "host_rng": ckpt.host_rng,
        "fingerprint": ckpt.fingerprint,
    }
    _write_bytes(tmp / STATE_FILE, json.dumps(state).encode())
    if final.exists():  # a retried run reaching the same step: replace, never half-replace
        stale = folder / f".tmp-old-{final.name}-{os.getpid()}"
        final.rename(stale)
        shutil.rmtree(stale)
    tmp.rename(final)
    _fsync(folder)  # make the rename itself durable
    _prune(folder, keep)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint; half-written or damaged ones are skipped with a warning."""
    if not folder.is_dir():
        return None
    candidates = sorted((p for p in folder.iterdir() if CHECKPOINT_NAME.match(p.name)), reverse=True)
    for path in candidates:
        if _is_complete(path):
            return path
        log.warning("ignoring incomplete checkpoint %s", path)
    return None


def load_checkpoint(path: Path) -> Checkpoint:
    state = json.loads((path / STATE_FILE).read_text())
    return Checkpoint(
        step=state["step"],
        trainable=load_file(path / "lora.safetensors"),
        optimizer=_unflatten_optimizer(load_file(path / "optimizer.safetensors"), state["optimizer"]),
        lr_scheduler=state["lr_scheduler"],
        scaler=state["scaler"],
        stream=state["stream"],
        rng=load_file(path / "rng.safetensors"),
        host_rng=state["host_rng"],
        fingerprint=state["fingerprint"],
    )


def capture_rng(generator: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every random state a training step can touch: ours, torch's (dropout), CUDA's, numpy's, Python's."""
    tensors = {"generator": generator.get_state(), "torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    np_state = np.random.get_state()
    host = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    return tensors, host


def restore_rng(generator: torch.Generator, tensors: dict[str, torch.Tensor], host: dict[str, Any]) -> None:
    generator.set_state(tensors["generator"])
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda_"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = host["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = host["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))


# --------------------------------------------------------------------------- helpers


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}/{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    for index, scalars in meta["scalars"].items():
        state.setdefault(int(index), {}).update(scalars)
    return {"state": state, "param_groups": meta["param_groups"]}


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, path)
    _fsync(path)


def _write_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_complete(path: Path) -> bool:
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "step" in state and all((path / f).is_file() for f in TENSOR_FILES)


def _prune(folder: Path, keep: int) -> None:
    complete = sorted((p for p in folder.iterdir() if CHECKPOINT_NAME.match(p.name) and _is_complete(p)),
                      reverse=True)
    for old in complete[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    for leftover in folder.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
