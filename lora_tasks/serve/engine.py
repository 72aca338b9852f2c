"""The one base pipeline: loaded once, one generation at a time, adapters switched between requests.

One pipeline runs one request at a time, so ``lock`` (re-entrant) covers loading, deleting and switching
adapters as well as generating: a request never sees another's adapter, or a model whose modules are being
replaced. ``set_adapters`` walks every module, so it runs only when the wanted adapter differs from the
active one. Each request seeds its own ``torch.Generator``, so an image depends on its request alone.

An adapter that replaces an evicted one is copied into the evicted one's layers (diffusers' hotswap) when
each of its tensors has a layer of the very same shape there: a copy is several times cheaper than
injecting new layers, and with equal shapes the model computes exactly what a fresh load would (a
layer the new adapter lacks is zeroed, which adds exact zeros). Any other adapter (another rank, more
layers, text-encoder weights) deletes the evicted one and is loaded fresh.

With ``fuse`` the active adapter is folded into the base weights (``fusing.Fuser``) and the LoRA layers
are switched off while it generates: its images then cost what the base model's do.
"""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lora_tasks.errors import ModelLoadError
from lora_tasks.serve.fusing import Fuser
from lora_tasks.serve.loader import AdapterIntegrityError, AdapterWeights, StateDict

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)
LORA_SUFFIXES = {".lora.down.weight": "lora_A", ".lora.up.weight": "lora_B", ".lora_A.weight": "lora_A",
                 ".lora_B.weight": "lora_B"}
"""A UNet LoRA tensor's key ending in diffusers' two formats, and the peft module holding it."""


@dataclass(frozen=True)
class GenerationParams:
    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 25
    guidance: float = 7.5
    width: int = 512
    height: int = 512


class Engine:
    """A StableDiffusionPipeline with adapters loaded by name (the pipeline tier's ``AdapterHost``)."""

    def __init__(self, base_model: Path, device: str = "cpu", hotswap: bool = True, fuse: bool = True) -> None:
        from diffusers import StableDiffusionPipeline

        if not (Path(base_model) / "model_index.json").is_file():
            raise ModelLoadError(f"{base_model} is not a diffusers pipeline folder (no model_index.json). Fix: set "
                                 "LORA_SERVE_BASE_MODEL to one")
        self.device = device
        self.hotswap = hotswap
        self.pipe: Any = StableDiffusionPipeline.from_pretrained(base_model, safety_checker=None,
                                                                 requires_safety_checker=False).to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.fuser = Fuser(self.pipe.unet) if fuse else None
        self.lock = threading.RLock()
        self._loaded: set[str] = set()
        self._active: str | None = None
        self._enabled: bool | None = None
        """Whether the LoRA layers are switched on; None when unknown (a load adds layers in its own state)."""

    def adapter_bytes(self, weights: AdapterWeights) -> int:
        """The adapter's weights as the model holds them (in the UNet's dtype)."""
        itemsize = next(self.pipe.unet.parameters()).element_size()
        return sum(t.numel() for t in weights.tensors.values()) * itemsize

    def load_adapter(self, name: str, weights: AdapterWeights) -> None:
        """Load a diffusers-format LoRA; one that fits no layer of this model is refused and leaves nothing."""
        with self.lock:
            self._active, self._enabled = None, None
            try:
                self._load(name, weights, hotswap=False)
            except Exception as exc:
                self._forget(name)
                raise AdapterIntegrityError(f"the adapter does not fit the base model ({exc})") from exc
            if name not in self.adapter_names():
                raise AdapterIntegrityError("the adapter has no weights for any layer of the base model. Fix: "
                                            "train it on this base model")
            self._loaded.add(name)

    def replace_adapter(self, name: str, weights: AdapterWeights) -> None:
        """Load ``weights`` as ``name`` in place of the adapter loaded under that name."""
        with self.lock:
            self._active, self._enabled = None, None
            if self.fuser is not None:
                self.fuser.unfuse(name)
            if self.hotswap and self._fits_in_place(name, weights.tensors):
                try:
                    self._load(name, weights, hotswap=True)
                    return
                except Exception as exc:  # a config peft will not swap (dropout, rsLoRA, DoRA): load it fresh
                    log.warning("hotswap into %s failed (%s); loading the adapter fresh", name, exc)
            self._forget(name)
            self.load_adapter(name, weights)

    def _load(self, name: str, weights: AdapterWeights, hotswap: bool) -> None:
        """What ``load_lora_weights`` does, with the LoRA config of the file's header, which diffusers reads
        only from a path."""
        tensors, alphas, metadata = self.pipe.lora_state_dict(dict(weights.tensors), return_lora_metadata=True)
        metadata = weights.lora_metadata or metadata
        if not all("lora" in key for key in tensors):
            raise AdapterIntegrityError("a tensor name lacks 'lora': this is not a LoRA file")
        self.pipe.load_lora_into_unet(tensors, network_alphas=alphas, unet=self.pipe.unet, adapter_name=name,
                                      metadata=metadata, _pipeline=self.pipe, hotswap=hotswap)
        self.pipe.load_lora_into_text_encoder(tensors, network_alphas=alphas, text_encoder=self.pipe.text_encoder,
                                              lora_scale=self.pipe.lora_scale, adapter_name=name,
                                              _pipeline=self.pipe, metadata=metadata, hotswap=hotswap)

    def _fits_in_place(self, name: str, tensors: StateDict) -> bool:
        """Whether every tensor is a UNet LoRA weight with a layer of ``name``'s of its very shape."""
        slot = {key: param.shape for key, param in self.pipe.unet.named_parameters() if f".{name}." in key}
        for key, tensor in tensors.items():
            suffix = next((s for s in LORA_SUFFIXES if key.endswith(s)), None)
            if not key.startswith("unet.") or suffix is None:
                return False
            module = key.removeprefix("unet.").removesuffix(suffix)
            if slot.get(f"{module}.{LORA_SUFFIXES[suffix]}.{name}.weight") != tensor.shape:
                return False
        return True

    def delete_adapter(self, name: str) -> None:
        """Delete the adapter's layers' weights from the model, returning their memory."""
        with self.lock:
            self._forget(name)

    def _forget(self, name: str) -> None:
        if self.fuser is not None:
            self.fuser.unfuse(name)
        if name in self.adapter_names():
            self.pipe.delete_adapters(name)
        self._loaded.discard(name)
        if self._active == name:
            self._active = None

    def adapter_names(self) -> set[str]:
        """The peft adapter names in the model's components."""
        return {name for names in self.pipe.get_list_adapters().values() for name in names}

    def generate(self, adapter: str | None, params: GenerationParams) -> Image:
        """One image with only ``adapter`` active (None: the base model alone)."""
        import torch

        with self.lock:
            self._switch(adapter)
            generator = torch.Generator(self.device).manual_seed(params.seed)
            return self.pipe(prompt=params.prompt, negative_prompt=params.negative_prompt or None,
                             num_inference_steps=params.steps, guidance_scale=params.guidance, width=params.width,
                             height=params.height, generator=generator).images[0]

    def _switch(self, adapter: str | None) -> None:
        """UNet-only, non-DoRA adapters are folded into the base weights; the others run unmerged."""
        fused = False
        if self.fuser is not None:
            if adapter is None or adapter in self.pipe.get_list_adapters().get("text_encoder", []):
                self.fuser.restore()
            else:
                fused = self.fuser.fuse(adapter)
        if adapter is None or fused:
            if self._loaded and self._enabled is not False:
                self.pipe.disable_lora()
                self._enabled = False
            return
        if self._enabled is not True:
            self.pipe.enable_lora()
            self._enabled = True
        if self._active != adapter:
            self.pipe.set_adapters(adapter)
            self._active = adapter


def png_bytes(image: Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
