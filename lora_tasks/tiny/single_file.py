"""Write a diffusers Stable Diffusion 1.x/2.x folder as one original-layout (LDM) checkpoint.

AUTOMATIC1111, ComfyUI and kohya-ss keep base models as single ``.safetensors`` files in the
original CompVis layout (``model.diffusion_model.input_blocks...``), which is what users
put in ``model_config.base_model``. This writes such a file from a diffusers folder, so the
single-file loading path can be exercised offline on our random-weight models.

    python -m lora_tasks.tiny single-file PIPELINE_DIR OUT.safetensors
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

UNET_RESNET = {"norm1.": "in_layers.0.", "conv1.": "in_layers.2.", "time_emb_proj.": "emb_layers.1.",
               "norm2.": "out_layers.0.", "conv2.": "out_layers.3.", "conv_shortcut.": "skip_connection."}
VAE_RESNET = {"conv_shortcut.": "nin_shortcut."}
VAE_ATTENTION = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}
Renames = list[tuple[str, str, dict[str, str]]]


def _unet_prefixes(config: dict, keys: set[str]) -> Renames:
    per = config["layers_per_block"] + 1
    count = len(config["block_out_channels"])
    out: Renames = [
        ("time_embedding.linear_1.", "time_embed.0.", {}), ("time_embedding.linear_2.", "time_embed.2.", {}),
        ("conv_in.", "input_blocks.0.0.", {}), ("conv_norm_out.", "out.0.", {}), ("conv_out.", "out.2.", {}),
        ("mid_block.resnets.0.", "middle_block.0.", UNET_RESNET), ("mid_block.attentions.0.", "middle_block.1.", {}),
        ("mid_block.resnets.1.", "middle_block.2.", UNET_RESNET),
    ]
    for i in range(count):
        for j in range(per - 1):
            out.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{per * i + j + 1}.0.", UNET_RESNET))
            out.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{per * i + j + 1}.1.", {}))
        out.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{per * (i + 1)}.0.op.", {}))
        has_attention = any(k.startswith(f"up_blocks.{i}.attentions.") for k in keys)
        for j in range(per):
            out.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{per * i + j}.0.", UNET_RESNET))
            out.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{per * i + j}.1.", {}))
        out.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{per * i + per - 1}.{2 if has_attention else 1}.",
                    {}))
    return out


def _vae_prefixes(config: dict) -> Renames:
    count = len(config["block_out_channels"])
    out: Renames = []
    for part in ("encoder", "decoder"):
        out += [(f"{part}.conv_norm_out.", f"{part}.norm_out.", {}),
                (f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.", VAE_ATTENTION)]
        out += [(f"{part}.mid_block.resnets.{j}.", f"{part}.mid.block_{j + 1}.", VAE_RESNET) for j in range(2)]
    for i in range(count):
        out.append((f"encoder.down_blocks.{i}.downsamplers.0.conv.", f"encoder.down.{i}.downsample.conv.", {}))
        out.append((f"decoder.up_blocks.{i}.upsamplers.0.conv.", f"decoder.up.{count - 1 - i}.upsample.conv.", {}))
        for j in range(config["layers_per_block"] + 1):
            out.append((f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.", VAE_RESNET))
            out.append((f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{count - 1 - i}.block.{j}.", VAE_RESNET))
    return out


def _rename(state: dict[str, torch.Tensor], renames: Renames, prefix: str) -> dict[str, torch.Tensor]:
    """Apply the longest matching prefix rename (and its inner renames) to every key."""
    ordered = sorted(renames, key=lambda r: -len(r[0]))
    out = {}
    for key, tensor in state.items():
        new = key
        for old, replacement, inner in ordered:
            if key.startswith(old):
                rest = key[len(old):]
                for inner_old, inner_new in inner.items():
                    if rest.startswith(inner_old):
                        rest = inner_new + rest[len(inner_old):]
                        if inner is VAE_ATTENTION and tensor.ndim == 2:  # linear -> 1x1 conv
                            tensor = tensor[:, :, None, None]
                        break
                new = replacement + rest
                break
        out[prefix + new] = tensor.contiguous()
    return out


def _text_model_key(key: str) -> str:
    """transformers 5 saves CLIPTextModel without the 'text_model.' level the LDM layout has."""
    return key if key.startswith("text_model.") else f"text_model.{key}"


def pipeline_to_single_file(pipeline_dir: Path, out: Path) -> Path:
    """Convert UNet, VAE and text encoder of a diffusers SD folder into one LDM-layout file."""
    from safetensors.torch import load_file, save_file

    def part(name: str, weights: str) -> tuple[dict, dict[str, torch.Tensor]]:
        folder = pipeline_dir / name
        return json.loads((folder / "config.json").read_text()), load_file(folder / weights)

    unet_config, unet = part("unet", "diffusion_pytorch_model.safetensors")
    vae_config, vae = part("vae", "diffusion_pytorch_model.safetensors")
    _, text = part("text_encoder", "model.safetensors")
    state = {
        **_rename(unet, _unet_prefixes(unet_config, set(unet)), "model.diffusion_model."),
        **_rename(vae, _vae_prefixes(vae_config), "first_stage_model."),
        **{f"cond_stage_model.transformer.{_text_model_key(k)}": v.contiguous() for k, v in text.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, out)
    return out
