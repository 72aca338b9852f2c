"""Auto-captioners: what writes a caption for an image that came without one."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from lora_tasks.errors import ModelLoadError


class Captioner(Protocol):
    name: str

    def captions(self, paths: list[Path]) -> list[str]: ...


class BlipCaptioner:
    """transformers' BLIP image captioning, greedy decoding (the same image gets the same caption)."""

    name = "blip"

    def __init__(self, model: str, max_new_tokens: int = 30, batch_size: int = 8, device: str | None = None,
                 background: tuple[int, int, int] = (255, 255, 255)) -> None:
        import torch
        from transformers import BlipForConditionalGeneration, BlipProcessor

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.processor = BlipProcessor.from_pretrained(model)
            self.model = BlipForConditionalGeneration.from_pretrained(model).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"dataset.caption.model {model!r} could not be loaded ({str(exc).splitlines()[0]}). Fix: point it at "
                "a BLIP folder saved with save_pretrained, or a hub id with network access"
            ) from None
        self.max_new_tokens, self.batch_size, self.background = max_new_tokens, batch_size, background

    def captions(self, paths: list[Path]) -> list[str]:
        import torch
        from PIL import Image, ImageOps

        from lora_tasks.intake.pixels import to_rgb

        out: list[str] = []
        for start in range(0, len(paths), self.batch_size):
            images = []
            for path in paths[start:start + self.batch_size]:
                with Image.open(path) as image:
                    images.append(to_rgb(ImageOps.exif_transpose(image), self.background))
            inputs = self.processor(images=images, return_tensors="pt").to(self.device)
            with torch.no_grad():
                ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            out += [" ".join(text.split()) for text in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return out
