"""Colours a job spec may name (``dataset.background``): checked when the spec is validated, used by intake
and training, so the spec and the pixels agree on what a name means."""

from __future__ import annotations

import re

HEX_COLOUR = re.compile(r"#(?:[0-9a-f]{3}){1,2}")


def parse_background(value: str) -> tuple[int, int, int]:
    """'#rrggbb' / '#rgb' / a colour name Pillow's ImageColor knows -> RGB.

    Anything else (alpha forms, 'rgb(...)', unknown names) raises ValueError naming the value and the accepted forms.
    """
    from PIL import ImageColor  # Pillow, only when a colour is parsed

    text = value.strip().lower()
    if not (HEX_COLOUR.fullmatch(text) or text in ImageColor.colormap):
        raise ValueError(f"background colour {value!r} is not understood: "
                         "use '#rrggbb', '#rgb' or a colour name such as 'white' or 'black'")
    red, green, blue = ImageColor.getrgb(text)[:3]
    return red, green, blue
