"""Our edit masks in the convention of Stable Diffusion servers.

Inside the bot (and for the OpenAI API) a mask is an RGBA PNG whose transparent pixels are the
area to repaint. AUTOMATIC1111 reads a mask the other way round: white, or opaque when the mask
has an alpha channel, is what it repaints. Sent as it is, our mask would make it repaint
everything except what the member marked. So the mask goes out as a plain black-and-white PNG
with the marked area white, which every A1111-derived server (Forge, SD.Next) reads the same.
"""

from __future__ import annotations

import io

from PIL import Image

from bot.imaging.encode import write_png
from bot.imaging.masks import edit_map_from_alpha


def white_repaints(mask_png: bytes) -> bytes:
    """The area our mask (or an image's own transparency) marks, white on black, as PNG.

    Raises ``EditNeedsMask`` when nothing is transparent, ``ImageFullyTransparent`` when all is.
    """
    with Image.open(io.BytesIO(mask_png)) as opened:
        opened.load()
        edit = edit_map_from_alpha(opened)
    return write_png(edit.convert("RGB"))
