"""Camera frames of another convention's size, brought to an embodiment's camera size the way openpi does it.

openpi's clients send 224x224 frames made with ``openpi_client.image_tools.resize_with_pad`` (its LIBERO and DROID
examples). The same rule brings any frame to a camera's declared size: scale so the whole frame fits (the side
that must shrink most decides, sizes rounded down), bilinear resampling as PIL does it, then centre the result on
black, any odd pixel of padding going to the bottom/right.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["resize_with_pad"]


def resize_with_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (h, w, 3) -> uint8 (height, width, 3), aspect ratio kept, padded with zeros; unchanged if it fits."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    scale = max(w / width, h / height)
    fit_h, fit_w = max(1, int(h / scale)), max(1, int(w / scale))
    fitted = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((fit_w, fit_h), resample=Image.BILINEAR))
    out = np.zeros((height, width, image.shape[2]), dtype=np.uint8)
    top, left = (height - fit_h) // 2, (width - fit_w) // 2
    out[top : top + fit_h, left : left + fit_w] = fitted
    return out
