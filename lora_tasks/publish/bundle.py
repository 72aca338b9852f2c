"""What one version holds: the adapter folder's files (weights, training summary), what the evaluation
wrote (report, sample grid, loss curve, samples; any may be absent), the job spec as ``job.yaml`` and the
model card, each by its path in the version."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lora_tasks.errors import LoraTaskError
from lora_tasks.publish.card import (
    CARD_FILE,
    EVAL_FILE,
    GRID_FILE,
    LOSS_CURVE_FILE,
    SAMPLES_DIR,
    SPEC_FILE,
    eval_figures,
    model_card,
)
from lora_tasks.spec.schema import JobSpec
from lora_tasks.train.outputs import DIFFUSERS_FILE, MERGED_DIR, PEFT_FILE, SUMMARY_FILE


@dataclass(frozen=True)
class Bundle:
    files: dict[str, Path]
    """Path in the version -> the local file."""
    figures: dict[str, Any]
    """The numbers the registry shows beside the version."""


def weight_files(spec: JobSpec) -> list[str]:
    """The files each requested format is made of, as the trainer's export names them."""
    names = {"diffusers": [DIFFUSERS_FILE], "kohya": [f"{spec.job.name}.safetensors"],
             "peft": [PEFT_FILE, "adapter_config.json"]}
    return [file for fmt in spec.written_formats for file in names[fmt]]


def check_formats(spec: JobSpec, adapter_dir: Path) -> None:
    """Refuse an adapter folder that lacks a requested format: a version holds every one."""
    missing = [f for f in weight_files(spec) if not (adapter_dir / f).is_file()]
    if missing:
        raise LoraTaskError(f"{adapter_dir} lacks {', '.join(missing)} for output.formats {spec.output.formats}; "
                            "nothing was published. Fix: rerun the train stage (it writes every requested format)")


def collect_bundle(spec: JobSpec, adapter_dir: Path, eval_dir: Path | None, staging: Path, *, version: int,
                   uri: str) -> Bundle:
    """The version's files; the spec and the card are written into ``staging``."""
    files = {p.name: p for p in sorted(adapter_dir.iterdir()) if p.is_file() and not p.name.startswith(".")}
    merged = adapter_dir / MERGED_DIR  # a text job's merged weights (output.merged)
    if merged.is_dir():
        files |= {f"{MERGED_DIR}/{p.relative_to(merged).as_posix()}": p for p in sorted(merged.rglob("*"))
                  if p.is_file()}
    files |= evaluation_files(eval_dir)
    (staging / SPEC_FILE).write_text(yaml.safe_dump(spec.to_yaml_dict(), sort_keys=False), encoding="utf-8")
    files[SPEC_FILE] = staging / SPEC_FILE
    summary, report = read_json(files.get(SUMMARY_FILE)), read_json(files.get(EVAL_FILE))
    card = model_card(spec, version=version, uri=uri, summary=summary, report=report, files=[*files, CARD_FILE])
    card.save(staging / CARD_FILE)
    files[CARD_FILE] = staging / CARD_FILE
    return Bundle(files, figures(summary, report))


def evaluation_files(eval_dir: Path | None) -> dict[str, Path]:
    if eval_dir is None or not eval_dir.is_dir():
        return {}
    found = {name: eval_dir / name for name in (EVAL_FILE, GRID_FILE, LOSS_CURVE_FILE) if (eval_dir / name).is_file()}
    samples = eval_dir / SAMPLES_DIR
    if samples.is_dir():
        found |= {f"{SAMPLES_DIR}/{p.name}": p for p in sorted(samples.glob("*.png")) if p.is_file()}
    return found


def read_json(path: Path | None) -> dict[str, Any]:
    return json.loads(path.read_text()) if path is not None else {}


def figures(summary: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """Training's and the evaluation's headline numbers (the registry's figures)."""
    loss = summary.get("train_loss") or {}
    found = {"steps": summary.get("steps"), "images": summary.get("images"), "examples": summary.get("examples"),
             "rank": (summary.get("lora") or {}).get("rank"),
             "train_loss_first": loss.get("first"), "train_loss_last": loss.get("last")}
    return {k: v for k, v in found.items() if v is not None} | eval_figures(report)
