"""Where the base model is and which layers it has, checked without loading its weights.

A base model is a diffusers folder, a single-file checkpoint (kohya / A1111 style), or a
hub id. Layer names are read from safetensors headers, so a typo in ``target_modules`` is
refused in milliseconds instead of after minutes of loading on a GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lora_tasks.errors import JobSpecError, Problem, UnsafeFileError
from lora_tasks.spec.schema import JobSpec, ModelSection

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
TRANSFORMER_ALIASES = {
    "q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "o_proj": "to_out.0", "out_proj": "to_out.0",
}
"""LLM / CLIP projection names and their diffusers-UNet equivalents."""
ATTENTION_LAYER = re.compile(r"\.attn\d+\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)$")
SINGLE_FILE_UNET_PREFIX = "model.diffusion_model."


@dataclass(frozen=True)
class BaseModelRef:
    """A located base model: ``location`` is an absolute path, or a hub id for kind 'hub'."""

    kind: Literal["diffusers", "single_file", "hub", "transformers"]
    location: str
    config: str | None = None
    allow_pickle: bool = False


def resolve_base_model(model: ModelSection) -> BaseModelRef:
    """Find the base model named in the spec; relative paths are taken from the working directory."""
    given = model.base_model
    path = Path(given).expanduser()
    if path.exists():
        return _local_ref(path.resolve(), model)
    if HUB_ID.match(given) and not given.startswith(".") and path.suffix not in {".safetensors", *PICKLE_SUFFIXES}:
        return BaseModelRef("hub", given, model.base_model_config, model.allow_pickle)
    raise JobSpecError([Problem(
        "model_config.base_model",
        f"{given!r} does not exist (looked for {path.resolve()})",
        "point it at a diffusers folder or a .safetensors checkpoint (paths are relative to the working "
        "directory), or give a hub id such as 'stable-diffusion-v1-5/stable-diffusion-v1-5'",
    )])


def _local_ref(path: Path, model: ModelSection) -> BaseModelRef:
    if path.is_dir():
        if not (path / "model_index.json").is_file() and not (path / "unet" / "config.json").is_file():
            raise JobSpecError([Problem(
                "model_config.base_model", f"{path} is a folder but not a diffusers pipeline (no model_index.json)",
                "point it at the pipeline folder (the one holding unet/, vae/, text_encoder/) or at a "
                ".safetensors file",
            )])
        return BaseModelRef("diffusers", str(path), None, model.allow_pickle)
    if path.suffix in PICKLE_SUFFIXES and not model.allow_pickle:
        raise refuse_pickle(path)
    if path.suffix not in {".safetensors", *PICKLE_SUFFIXES}:
        raise JobSpecError([Problem(
            "model_config.base_model", f"{path.name} is neither a .safetensors checkpoint nor a diffusers folder",
            "convert the checkpoint to .safetensors",
        )])
    config = model.base_model_config
    if config and Path(config).expanduser().exists():
        config = str(Path(config).expanduser().resolve())
    elif config and not HUB_ID.match(config):
        raise JobSpecError([Problem(
            "model_config.base_model_config", f"{config!r} does not exist",
            "point it at a diffusers folder with the checkpoint's configs, or a hub id",
        )])
    return BaseModelRef("single_file", str(path), config, model.allow_pickle)


def refuse_pickle(path: Path) -> UnsafeFileError:
    return UnsafeFileError(
        f"{path} is a pickled checkpoint ({path.suffix}); unpickling can run arbitrary code, so it is not "
        "loaded. Fix: convert it to .safetensors, or set model_config.allow_pickle: true to load it with "
        "torch.load(weights_only=True), which refuses anything but tensors."
    )


# ------------------------------------------------------------------ layer discovery


def unet_layer_names(ref: BaseModelRef) -> list[str] | None:
    """Names of the UNet's weight-bearing layers, from file headers (read without torch: validate_request
    stays light); None when not knowable offline."""
    from safetensors import safe_open

    if ref.kind == "diffusers":
        keys = _diffusers_unet_keys(Path(ref.location) / "unet")
        if keys is None:
            return None
    elif ref.kind == "single_file" and ref.location.endswith(".safetensors"):
        with safe_open(ref.location, framework="numpy") as f:
            keys = [k.removeprefix(SINGLE_FILE_UNET_PREFIX) for k in f.keys()  # noqa: SIM118 - safe_open has no __iter__
                    if k.startswith(SINGLE_FILE_UNET_PREFIX)]
    else:
        return None
    return sorted({k.rsplit(".", 1)[0] for k in keys if k.endswith((".weight", ".bias"))})


def _diffusers_unet_keys(folder: Path) -> list[str] | None:
    from safetensors import safe_open

    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    if index.is_file():
        return list(json.loads(index.read_text())["weight_map"])
    single = folder / "diffusion_pytorch_model.safetensors"
    if single.is_file():
        with safe_open(str(single), framework="numpy") as f:
            return list(f.keys())
    return None


def attention_projections(layer_names: list[str]) -> list[str]:
    """The distinct attention projection names (to_q, to_k, ...) present in a UNet."""
    order = ["to_q", "to_k", "to_v", "to_out.0"]
    found = {m.group(1) for name in layer_names if (m := ATTENTION_LAYER.search(name))}
    return sorted(found, key=lambda n: (order.index(n) if n in order else len(order), n))


def _matches(target: str, layer_names: list[str]) -> bool:
    """peft's rule: a target matches a layer whose name equals it or ends with '.<target>'."""
    suffix = "." + target
    return any(name == target or name.endswith(suffix) for name in layer_names)


def resolve_target_modules(requested: list[str], layer_names: list[str]) -> tuple[list[str], list[str]]:
    """Map requested target modules onto the UNet's layers; returns (modules, warnings).

    Transformer names (q_proj...) that the UNet lacks are translated to their diffusers
    names with a warning; anything else that matches no layer is refused.
    """
    modules: list[str] = []
    warnings: list[str] = []
    unknown: list[str] = []
    for target in requested:
        if _matches(target, layer_names):
            modules.append(target)
        elif target in TRANSFORMER_ALIASES and _matches(TRANSFORMER_ALIASES[target], layer_names):
            mapped = TRANSFORMER_ALIASES[target]
            warnings.append(
                f"model_config.target_modules: '{target}' is a transformer layer name; this diffusers UNet "
                f"calls it '{mapped}', so '{mapped}' is trained"
            )
            modules.append(mapped)
        else:
            unknown.append(target)
    if unknown:
        available = attention_projections(layer_names)
        raise JobSpecError([Problem(
            "model_config.target_modules",
            f"{', '.join(repr(u) for u in unknown)} match no layer of the base model's UNet; its attention "
            f"projections are {', '.join(available) or '(none found)'}",
            f"use some of: {', '.join(available)}",
        )])
    return list(dict.fromkeys(modules)), warnings


def locate_base_model(spec: JobSpec) -> BaseModelRef:
    """The job's base model: a diffusion pipeline for image jobs, a causal language model for text jobs."""
    if spec.job.task == "text":
        from lora_tasks.spec.causal_lm import resolve_causal_lm

        return resolve_causal_lm(spec.model)
    return resolve_base_model(spec.model)


def check_spec_against_model(spec: JobSpec) -> tuple[JobSpec, BaseModelRef, list[str]]:
    """Locate the base model and fit target_modules to it; returns the fitted spec and warnings."""
    from lora_tasks.spec.causal_lm import causal_lm_layer_names, check_max_length, context_length, resolve_text_targets

    ref = locate_base_model(spec)
    if spec.job.task == "text":
        check_max_length(spec.training.max_length, context_length(ref))
    notes = spec.format_notes()
    for note in notes:
        log.warning(note)
    text = spec.job.task == "text"
    names = causal_lm_layer_names(ref) if text else unet_layer_names(ref)
    if names is None:  # a hub id or pickle: checked again once the model is loaded
        return spec, ref, notes
    if text:
        modules, warnings = resolve_text_targets(spec.model.target_modules, names), []
    else:
        modules, warnings = resolve_target_modules(spec.model.target_modules, names)
    for warning in warnings:
        log.warning(warning)
    fitted = spec.model_copy(update={"model": spec.model.model_copy(update={"target_modules": modules})})
    return fitted, ref, notes + warnings


# --------------------------------------------------------------------------- hashing


def weight_files(ref: BaseModelRef) -> list[Path]:
    """The files whose bytes define the base model (what its hash covers)."""
    if ref.kind == "single_file":
        return [Path(ref.location)]
    root = Path(ref.location)
    if ref.kind == "transformers":
        return sorted(root.glob("*.safetensors"))
    if ref.kind == "hub":
        root = _hub_snapshot(ref.location)
        if root is None:
            return []
    parts = sorted(p for sub in ("unet", "vae", "text_encoder") for p in (root / sub).glob("*.safetensors"))
    return parts or sorted(root.glob("*.safetensors"))  # a hub language model keeps its weights at the top


def _hub_snapshot(repo_id: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not in the local cache: nothing to hash
        return None


def base_model_sha256(ref: BaseModelRef) -> str:
    """sha256 of the weight files, in order (for a single file, the kohya 'new' model hash)."""
    files = weight_files(ref)
    if not files:
        return ""
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as f:
            hashlib.file_digest(f, lambda: digest)  # one digest over every file
    return digest.hexdigest()
