"""The one base pipeline: loaded once, one generation at a time, adapters switched between requests.

One pipeline runs one request at a time, so ``lock`` (re-entrant) covers loading, deleting and switching
adapters as well as generating: a request never sees another's adapter, or a model whose modules are being
replaced. ``set_adapters`` walks every module, so it runs only when the wanted adapter differs from the
active one. Each request seeds its own ``torch.Generator``, so an image depends on its request alone.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lora_tasks.errors import ModelLoadError
from lora_tasks.serve.loader import AdapterIntegrityError, StateDict

if TYPE_CHECKING:
    from PIL.Image import Image


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

    def __init__(self, base_model: Path, device: str = "cpu") -> None:
        from diffusers import StableDiffusionPipeline

        if not (Path(base_model) / "model_index.json").is_file():
            raise ModelLoadError(f"{base_model} is not a diffusers pipeline folder (no model_index.json). Fix: set "
                                 "LORA_SERVE_BASE_MODEL to one")
        self.device = device
        self.pipe: Any = StableDiffusionPipeline.from_pretrained(base_model, safety_checker=None,
                                                                 requires_safety_checker=False).to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.lock = threading.RLock()
        self._loaded: set[str] = set()
        self._active: str | None = None
        self._enabled: bool | None = None
        """Whether the LoRA layers are switched on; None when unknown (a load adds layers in its own state)."""

    def adapter_bytes(self, state_dict: StateDict) -> int:
        """The adapter's weights as the model holds them (in the UNet's dtype)."""
        itemsize = next(self.pipe.unet.parameters()).element_size()
        return sum(t.numel() for t in state_dict.values()) * itemsize

    def load_adapter(self, name: str, state_dict: StateDict) -> None:
        """Load a diffusers-format LoRA; one that fits no layer of this model is refused and leaves nothing."""
        with self.lock:
            self._active, self._enabled = None, None
            try:
                self.pipe.load_lora_weights(dict(state_dict), adapter_name=name)  # diffusers pops from its dict
            except Exception as exc:
                self._forget(name)
                raise AdapterIntegrityError(f"the adapter does not fit the base model ({exc})") from exc
            if name not in self.adapter_names():
                raise AdapterIntegrityError("the adapter has no weights for any layer of the base model. Fix: "
                                            "train it on this base model")
            self._loaded.add(name)

    def delete_adapter(self, name: str) -> None:
        """Delete the adapter's layers' weights from the model, returning their memory."""
        with self.lock:
            self._forget(name)

    def _forget(self, name: str) -> None:
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
        if adapter is None:
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
