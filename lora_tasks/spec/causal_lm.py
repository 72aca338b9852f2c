"""A text job's base model: a causal language model folder (``save_pretrained``) or a hub id, and the
linear layers its decoder has, read from the safetensors headers without loading a weight.

The checks mirror the image side's (:mod:`lora_tasks.spec.base_model`): a target module the model lacks
is refused in milliseconds with the names it has, instead of as peft's ValueError after loading.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lora_tasks.errors import JobSpecError, Problem
from lora_tasks.spec.base_model import HUB_ID, PICKLE_SUFFIXES, BaseModelRef, refuse_pickle
from lora_tasks.spec.schema import ModelSection

DECODER_LINEAR = re.compile(r"(?:^|\.)layers\.\d+\.(?:[A-Za-z_]+\.)*?([A-Za-z_]+)\.weight$")
"""A weight inside a decoder layer: the last module name before ``.weight`` is what peft matches."""
NORMS = re.compile(r"norm", re.IGNORECASE)


def resolve_causal_lm(model: ModelSection) -> BaseModelRef:
    """A local ``from_pretrained`` folder (config.json and weights) or a hub id; anything else is refused."""
    given = model.base_model
    path = Path(given).expanduser()
    if path.is_dir():
        if (path / "model_index.json").is_file():
            raise JobSpecError([Problem(
                "model_config.base_model", f"{path.resolve()} is a diffusion pipeline, but job.task is 'text'",
                "set job.task: image, or point model_config.base_model at a causal language model",
            )])
        if not (path / "config.json").is_file():
            raise JobSpecError([Problem(
                "model_config.base_model", f"{path.resolve()} is a folder without config.json, so not a saved "
                "causal language model", "point it at the folder save_pretrained wrote (config.json, "
                "model.safetensors, tokenizer files)",
            )])
        _refuse_pickled_weights(path.resolve(), model.allow_pickle)
        return BaseModelRef("transformers", str(path.resolve()), None, model.allow_pickle)
    if not path.exists() and HUB_ID.match(given) and not given.startswith("."):
        return BaseModelRef("hub", given, None, model.allow_pickle)
    raise JobSpecError([Problem(
        "model_config.base_model", f"{given!r} is not a causal language model folder (looked for "
        f"{path.resolve()})", "point it at a folder written by save_pretrained, or give a hub id such as "
        "'meta-llama/Llama-3.2-1B'",
    )])


def _refuse_pickled_weights(root: Path, allow_pickle: bool) -> None:
    pickles = sorted(p for p in root.glob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles and not allow_pickle and not any(root.glob("*.safetensors")):
        raise refuse_pickle(pickles[0])


def causal_lm_layer_names(ref: BaseModelRef) -> list[str] | None:
    """Every weight-bearing module's name, from the weight files' headers; None when not readable offline."""
    from safetensors import safe_open

    if ref.kind != "transformers":
        return None
    root = Path(ref.location)
    index = root / "model.safetensors.index.json"
    if index.is_file():
        return _modules(json.loads(index.read_text())["weight_map"])
    single = root / "model.safetensors"
    if not single.is_file():
        return None
    with safe_open(str(single), framework="numpy") as f:
        return _modules(list(f.keys()))


def _modules(keys: list[str]) -> list[str]:
    return sorted({k.rsplit(".", 1)[0] for k in keys if k.endswith(".weight")})


def decoder_linear_names(layer_names: list[str]) -> list[str]:
    """The distinct module names inside the decoder layers (q_proj, v_proj, up_proj, ...), norms left out:
    what ``target_modules`` may name."""
    found: dict[str, None] = {}
    for name in layer_names:
        match = DECODER_LINEAR.search(name + ".weight")
        if match and not NORMS.search(match.group(1)):
            found[match.group(1)] = None
    return sorted(found)


def resolve_text_targets(requested: list[str], layer_names: list[str]) -> list[str]:
    """The requested target modules, each matching some layer by peft's rule (equal, or ending ``.name``);
    otherwise refused with the decoder's linear layers as the candidates."""
    unknown = [t for t in requested if not any(n == t or n.endswith("." + t) for n in layer_names)]
    if unknown:
        candidates = decoder_linear_names(layer_names)
        raise JobSpecError([Problem(
            "model_config.target_modules",
            f"{', '.join(repr(u) for u in unknown)} match no layer of the language model; its decoder layers "
            f"have {', '.join(candidates) or '(none found)'}",
            f"use some of: {', '.join(candidates)} (q_proj and v_proj are the usual pair)",
        )])
    return list(dict.fromkeys(requested))


def context_length(ref: BaseModelRef) -> int | None:
    """The model's context (``max_position_embeddings`` in its config.json); None when not on this machine."""
    config = Path(ref.location) / "config.json"
    if ref.kind != "transformers" or not config.is_file():
        return None
    return json.loads(config.read_text()).get("max_position_embeddings")


def check_max_length(asked: int | None, context: int | None) -> None:
    """A row longer than the model's context would run positions it was never trained on: refused."""
    if asked and context and asked > context:
        raise JobSpecError([Problem("training_config.max_length", f"{asked} tokens is longer than the model's "
                                    f"context of {context} (max_position_embeddings)",
                                    f"use at most {context}, or leave it unset for the context length")])
