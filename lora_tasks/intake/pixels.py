"""One conversion to 8-bit RGB for every image intake accepts; training and the captioner both use it.

Pillow's plain ``convert("RGB")`` is wrong for several valid inputs: it clips 16-bit grey instead of scaling
it, so a 16-bit PNG comes out almost all white, and it drops alpha, so the colour hidden under fully
transparent pixels shows through. ``to_rgb`` is the one conversion everything downstream uses.

Pillow 13 opens a 16-bit grey PNG as mode 'I;16' (older versions gave 'I'), a 16-bit RGB or RGBA PNG as
8-bit RGB / RGBA keeping each sample's high byte (a 16-bit RGB tRNS colour key then matches nothing and is
ignored), and a 16-bit grey+alpha PNG as 8-bit RGBA.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
from PIL import Image, ImageCms

WHITE = (255, 255, 255)

_WIDE_GREY = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
"""Grey modes whose samples are wider than 8 bits."""

_SRGB = ImageCms.createProfile("sRGB")


def to_rgb(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """The image as 8-bit RGB: 16-bit and 32-bit integer grey scaled (not clipped) to 8 bits, float grey in
    [0, 1] scaled, palette and 1-bit expanded, transparency (alpha channel, palette transparency, tRNS /
    'transparency' info) composited over ``background``, CMYK through its embedded ICC profile when it has
    one (ImageCms) and Pillow's conversion otherwise. The first frame of an animation is whatever frame
    ``image`` is on (callers seek(0)). An RGB image without transparency is returned as it is."""
    if image.mode in _WIDE_GREY:
        return _wide_grey_to_rgb(image, background)
    if image.mode == "CMYK":
        return _cmyk_to_rgb(image)
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _wide_grey_to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Grey wider than 8 bits scaled to 8; pixels equal to the 'transparency' value become ``background``."""
    raw = np.asarray(image)
    values = np.nan_to_num(raw.astype(np.float32))
    levels = np.clip(np.rint(values / _divisor(image.mode, float(values.max(initial=0)))), 0, 255)
    rgb = np.repeat(levels.astype(np.uint8)[..., None], 3, axis=2)
    transparent = image.info.get("transparency")
    if isinstance(transparent, int):
        rgb[raw == transparent] = background
    return Image.fromarray(rgb)


def _divisor(mode: str, top: float) -> float:
    """What ``mode``'s samples are divided by to give 8-bit levels, given the largest sample.

    'I;16*' is always 16-bit (65535 / 257 = 255). Mode 'I' holds 8-bit, 16-bit (older Pillow's 16-bit PNGs)
    or full 32-bit data, told apart by the largest value. 'F' is taken as [0, 1] when it fits, else as levels.
    """
    if mode == "F":
        return 1 / 255 if top <= 1.0 else 1.0
    if mode == "I" and top <= 255:
        return 1.0
    if mode == "I" and top > 65535:
        return (2**31 - 1) / 255
    return 257.0


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """Through the embedded ICC profile into sRGB; Pillow's naive formula without one or with an unusable one."""
    icc = image.info.get("icc_profile")
    if icc:
        try:
            return ImageCms.profileToProfile(image, BytesIO(icc), _SRGB, outputMode="RGB")
        except ImageCms.PyCMSError:
            pass
    return image.convert("RGB")
