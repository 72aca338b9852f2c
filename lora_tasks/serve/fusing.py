"""The active adapter folded into the base weights, so a generation costs what the base model's does.

peft's unmerged LoRA layers run two extra matmuls beside every adapted projection at every step; folded
in, they run none. peft's own ``merge``/``unmerge`` subtract the delta back, which drifts the base weights
by a rounding error at every switch; here the base weights of each adapted layer are kept once and
copied back, so the base model, and every adapter folded onto it, stay bit for bit what they were.
Switching costs one ``orig + delta`` per adapted layer: milliseconds against seconds of generation.

DoRA layers, and adapters with text-encoder layers (not folded here), run unmerged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class Fuser:
    """Folds one adapter at a time into a UNet's LoRA-wrapped layers."""

    def __init__(self, unet: Any) -> None:
        self.unet = unet
        self.fused: str | None = None
        self._originals: dict[str, torch.Tensor] = {}
        """The base weight of each adapted layer (by its module name), copied the first time it is folded."""
        self._touched: list[tuple[str, Any]] = []

    @property
    def kept_bytes(self) -> int:
        """What the kept base weights cost: the price of folding."""
        return sum(t.numel() * t.element_size() for t in self._originals.values())

    def fuse(self, name: str) -> bool:
        """Base weights plus ``name``'s delta in every layer it adapts (the others back to the base's), in one
        walk over the UNet; False, with the base weights back, when ``name`` has no UNet layer or a DoRA one."""
        import torch

        if self.fused == name:
            return True
        self.restore()
        layers = self._layers(name)
        if not layers or any(layer.use_dora.get(name, False) for _, layer in layers):
            return False
        with torch.no_grad():
            for module, layer in layers:
                weight = layer.get_base_layer().weight
                original = self._originals.setdefault(module, weight.detach().clone())
                weight.copy_(original + layer.get_delta_weight(name).to(weight.dtype))
                self._touched.append((module, layer))
        self.fused = name
        return True

    def unfuse(self, name: str) -> None:
        """The base weights back if ``name`` is the adapter folded in (it is being replaced or deleted)."""
        if self.fused == name:
            self.restore()

    def restore(self) -> None:
        """The base model's own weights back, exactly."""
        import torch

        with torch.no_grad():
            for module, layer in self._touched:
                layer.get_base_layer().weight.copy_(self._originals[module])
        self._touched.clear()
        self.fused = None

    def _layers(self, name: str) -> list[tuple[str, Any]]:
        from peft.tuners.lora import LoraLayer

        return [(module, m) for module, m in self.unet.named_modules()
                if isinstance(m, LoraLayer) and name in m.lora_A]
