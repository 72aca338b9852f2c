"""How well a sample image shows its prompt, by a CLIP model: torchmetrics' CLIPScore, per image.

The score is ``100 * max(cos(image embedding, text embedding), 0)``. The tokenizer and the PIL image
processor are loaded by class rather than through ``CLIPProcessor``, so any CLIP folder or hub id works
whichever processor class its config names (the fast one needs torchvision, which we do not ship).
"""

from __future__ import annotations

from typing import Any

from lora_tasks.errors import ModelLoadError


class ClipScorer:
    """One loaded CLIP model; ``scores`` pairs each image with its text."""

    def __init__(self, location: str, device: Any) -> None:
        import torch
        from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

        try:
            self.model = CLIPModel.from_pretrained(location).to(device).eval()
            self.tokenizer = CLIPTokenizer.from_pretrained(location)
            self.images = CLIPImageProcessorPil.from_pretrained(location)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"CLIP model {location} could not be loaded: {exc}. Fix: set eval.clip_model to a "
                                 "CLIP folder (config.json, weights, tokenizer, preprocessor) or hub id") from exc
        self.device = device
        self._torch = torch

    def scores(self, images: list[Any], texts: list[str]) -> list[float]:
        """One score in [0, 100] per (image, text) pair; texts longer than CLIP's window are truncated."""
        torch = self._torch
        if not images:
            return []
        tokens = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        pixels = self.images(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        with torch.no_grad():  # transformers 5: the pooled output of get_*_features is the projected embedding
            image_embeds = self.model.get_image_features(pixel_values=pixels).pooler_output
            text_embeds = self.model.get_text_features(**tokens).pooler_output
        cosine = torch.nn.functional.cosine_similarity(image_embeds.float(), text_embeds.float(), dim=-1)
        return [round(float(s), 4) for s in (100 * cosine.clamp(min=0)).cpu()]

