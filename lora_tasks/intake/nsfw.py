"""NSFW scoring as a plug-in: a score in [0, 1] per image; the filter compares it to a threshold.

``none`` (the default) scores every image 0 and so rejects nothing. ``nudenet`` uses
NudeNet's detector, which ships its ONNX model inside its wheel (no download). It is an
optional extra, ``pip install -r requirements-nsfw.txt``: the package's metadata says MIT but
the licence files in its wheel are AGPL-3.0, so it is kept out of the default install. An
operator who enables it should read those terms.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from lora_tasks.errors import LoraTaskError

EXPOSED_CLASSES = {
    "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "FEMALE_BREAST_EXPOSED", "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
}
"""NudeNet labels that count towards the score; the rest (faces, covered parts) do not."""


class NsfwDetector(Protocol):
    name: str

    def scores(self, paths: list[Path]) -> list[float]: ...


class NoNsfwDetector:
    name = "none"

    def scores(self, paths: list[Path]) -> list[float]:
        return [0.0 for _ in paths]


class NudeNetDetector:
    """The image's score is the highest confidence of any exposed-body-part detection."""

    name = "nudenet"

    def __init__(self) -> None:
        try:
            from nudenet import NudeDetector
        except ImportError:
            raise LoraTaskError("dataset.filter.nsfw_detector is 'nudenet' but NudeNet is not installed. Fix: pip "
                                "install -r requirements-nsfw.txt (AGPL-3.0 licence files), or use 'none'") from None
        self.detector = NudeDetector()

    def scores(self, paths: list[Path]) -> list[float]:
        return [max((d["score"] for d in self.detector.detect(str(p)) if d["class"] in EXPOSED_CLASSES), default=0.0)
                for p in paths]


DETECTORS: dict[str, Callable[[], NsfwDetector]] = {"none": NoNsfwDetector, "nudenet": NudeNetDetector}


def nsfw_detector(name: str) -> NsfwDetector:
    return DETECTORS[name]()
