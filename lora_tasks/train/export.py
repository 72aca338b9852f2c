"""Write the trained LoRA in the formats users load, all at once or not at all.

- ``diffusers``: ``pytorch_lora_weights.safetensors``, read by ``pipe.load_lora_weights``;
  the adapter config (alpha, rank, targets) rides in its header.
- ``kohya``: ``<name>.safetensors`` with ``lora_unet_*.lora_down/lora_up/alpha`` keys for
  AUTOMATIC1111 / ComfyUI, with kohya's ``ss_*`` training metadata in the header.
- ``peft``: ``adapter_model.safetensors`` + ``adapter_config.json`` (the only format of a text LoRA,
  written by :mod:`lora_tasks.train.text_task`, with ``merged/`` beside it when the job asks).

Everything is written into a hidden temporary folder that is renamed to ``adapter/`` only
when complete, so a failed run never leaves something that looks like a finished adapter; what a
killed export left (any process's) is swept by the next run of the folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from lora_tasks.digests import file_digest
from lora_tasks.train.outputs import ADAPTER_DIR, PEFT_FILE


def lora_state_dict(unet: Any) -> dict[str, torch.Tensor]:
    """The adapter's tensors in peft naming (``...to_q.lora_A.weight``), detached, on the CPU."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(unet).items()}


def kohya_state_dict(peft_state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """kohya/WebUI keys, with the real alpha (diffusers' converter assumes alpha = rank)."""
    from diffusers.utils import convert_state_dict_to_kohya

    converted = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in peft_state.items()})
    return {k: (torch.tensor(alpha, dtype=torch.float32) if k.endswith(".alpha") else v.contiguous())
            for k, v in converted.items()}


def write_image_formats(unet: Any, folder: Path, name: str, formats: list[str], alpha: float,
                        kohya_metadata: dict[str, str]) -> None:
    """The UNet's LoRA in every requested image format."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    state = lora_state_dict(unet)
    config = unet.peft_config["default"]
    if "diffusers" in formats:
        StableDiffusionPipeline.save_lora_weights(
            folder,
            unet_lora_layers=convert_state_dict_to_diffusers(state),
            unet_lora_adapter_metadata=config.to_dict(),
        )
    if "kohya" in formats:
        save_file(kohya_state_dict(state, alpha), folder / f"{name}.safetensors", metadata=kohya_metadata)
    if "peft" in formats:
        save_file(state, folder / PEFT_FILE, metadata={"format": "pt"})
        config.save_pretrained(str(folder))


def export_adapter(output_dir: Path, write_weights: Callable[[Path], None],
                   describe: Callable[[Path], dict[str, str]]) -> Path:
    """Write the weights (``write_weights`` fills a folder) to ``output_dir/adapter``, plus the text files
    that ``describe`` returns (name -> text) once it has seen the weights folder."""
    sweep_interrupted_exports(output_dir)
    final = output_dir / ADAPTER_DIR
    partial = output_dir / f".{ADAPTER_DIR}.partial-{os.getpid()}"
    partial.mkdir(parents=True)
    try:
        write_weights(partial)
        for filename, text in describe(partial).items():
            (partial / filename).write_text(text, encoding="utf-8")
        _replace_dir(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def sweep_interrupted_exports(output_dir: Path) -> None:
    """Remove what an export killed by SIGKILL left, whichever process it was: a hidden partial folder, or
    the previous adapter moved aside (put back first when the kill came between the two renames, so the
    folder holds the last complete adapter). The caller owns ``output_dir`` (the trainer's lock)."""
    final = output_dir / ADAPTER_DIR
    aside = sorted(output_dir.glob(f".{ADAPTER_DIR}.old-*"))
    if aside and not final.exists():
        aside.pop().rename(final)
    for leftover in [*output_dir.glob(f".{ADAPTER_DIR}.partial-*"), *aside]:
        shutil.rmtree(leftover)


def _replace_dir(new: Path, final: Path) -> None:
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        new.rename(final)
        shutil.rmtree(old)
    else:
        new.rename(final)


def file_digests(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file in a folder (the summary lists what it describes)."""
    return {path.relative_to(folder).as_posix(): file_digest(path)
            for path in sorted(p for p in folder.rglob("*") if p.is_file())}
