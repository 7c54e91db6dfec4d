"""One image to look at, as a tensor: a photograph that ships inside scikit-image (``skimage.data``:
astronaut, chelsea, coffee, camera, coins, ...; nothing is downloaded) or an image file read with PIL.

:func:`load_image` returns ``(3, H, W)`` float32 in ``[0, 1]``: grey images are repeated over the three
channels, an alpha channel is dropped (composited over white). With ``size`` the image is first scaled
so that it covers the target (its short side becomes ``size``), then centre-cropped to exactly
``size x size`` (or ``(H, W)``): the aspect ratio is kept, the borders of the long side are cut off.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nnatlas._suggest import unknown_choice_message
from nnatlas.data.torchvision_sets import DataError

#: ``skimage.data`` images stored inside the scikit-image wheel (no network): 2-d photographs and
#: test images, colour or grey.
SKIMAGE_IMAGES = (
    "astronaut",
    "brick",
    "camera",
    "cat",
    "cell",
    "chelsea",
    "checkerboard",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "shepp_logan_phantom",
    "text",
)


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or "." in spec or Path(spec).exists()


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    """``(H, W)``, ``(H, W, 1|3|4)`` of bool / uint8 / uint16 / float as ``(3, H, W)`` float32 in [0, 1]."""
    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    else:
        a = np.clip(a.astype(np.float32), 0.0, 1.0)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] == 4:  # RGBA: over a white background
        alpha = a[:, :, 3:4]
        a = a[:, :, :3] * alpha + (1.0 - alpha)
    elif a.shape[2] == 2:  # grey + alpha
        alpha = a[:, :, 1:2]
        a = a[:, :, :1] * alpha + (1.0 - alpha)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).contiguous()  # (3, H, W)


def _read_file(path: Path) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise DataError(f"image {str(path)!r}: no such file")
    if not path.is_file():
        raise DataError(f"image {str(path)!r} is not a file")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
            elif im.mode not in ("L", "RGB"):
                im = im.convert("RGB")
            array = np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"image {str(path)!r} cannot be decoded as an image ({reason})") from None
    return _to_tensor(array)


def _resize(image: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Scale so the image covers ``(H, W)``, then centre-crop to it (antialiased bilinear)."""
    import torch.nn.functional as F

    if isinstance(size, int) and not isinstance(size, bool):
        th, tw = size, size
    elif isinstance(size, Sequence) and len(size) == 2 and all(isinstance(s, int) for s in size):
        th, tw = int(size[0]), int(size[1])
    else:
        raise ValueError(f"size must be a positive int or (height, width); got {size!r}")
    if th < 1 or tw < 1:
        raise ValueError(f"size must be positive; got {size!r}")
    _, h, w = image.shape
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    if (nh, nw) != (h, w):
        image = F.interpolate(
            image.unsqueeze(0), size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1
        )[0].clamp(0.0, 1.0)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return image[:, top : top + th, left : left + tw].contiguous()


def load_image(spec: str | os.PathLike, *, size: int | Sequence[int] | None = None) -> torch.Tensor:
    """An image as ``(3, H, W)`` float32 in ``[0, 1]``.

    Args:
        spec: the name of a ``skimage.data`` image (``SKIMAGE_IMAGES``: ``astronaut``, ``chelsea``,
            ``coffee``, ``camera``, ...), or the path of an image file PIL can read (PNG, JPEG, ...).
            A path that exists wins over a name.
        size: ``None`` keeps the image's own size; an int ``s`` gives ``(3, s, s)`` and ``(H, W)`` gives
            ``(3, H, W)``: scaled so the short side covers the target, then centre-cropped (aspect kept).

    Raises:
        DataError: (a ``ValueError``) an unknown name (the message lists the valid ones), a missing file,
            or a file that cannot be decoded; one line naming it.
    """
    text = os.fspath(spec)
    if not isinstance(text, str) or not text:
        raise DataError(f"image must be a skimage.data name or a file path; got {spec!r}")
    path = Path(text)
    if path.exists() or _looks_like_path(text):
        image = _read_file(path)
    elif text in SKIMAGE_IMAGES:
        import skimage.data

        image = _to_tensor(getattr(skimage.data, text)())
    else:
        raise DataError(unknown_choice_message("skimage.data image (or no such file)", text, SKIMAGE_IMAGES))
    if size is not None:
        image = _resize(image, size)
    return image
