"""Image decoding and crop preprocessing with Pillow and numpy (no torchvision).

:func:`load_rgb` opens any file Pillow reads and returns an RGB image, or
raises :class:`ImageProblem` with a one-line reason. :func:`crops` turns an
RGB image into uint8 crops, ``(n_crops, crop, crop, 3)``.

The default geometry reproduces the reference features of
``flickr8k-effnet-lite0``: shorter side resized to 256 with Pillow BILINEAR
(skipped when it already is 256), then the 224x224 centre crop. Each crop is
resampled straight from the source with ``Image.resize(..., box=...)``: the
same pixels as resizing the whole image and cropping (at most 1/255 apart),
without materializing the whole resized image, so a 1x20000 strip costs no
more memory than a square photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Background that transparent pixels are composited onto.
BACKGROUND = (255, 255, 255)


class ImageProblem(Exception):
    """An image that cannot be used; ``str(exc)`` says why, in one line."""


def load_rgb(path: str | Path) -> Image.Image:
    """Decode ``path`` into an RGB image (first frame; EXIF orientation applied; transparency composited onto
    white). The one place image files are opened for features (``vsekit.image_features`` hands PIL images here
    as files).

    Pillow's decompression-bomb guard stays on: an image with more than
    ``PIL.Image.MAX_IMAGE_PIXELS`` pixels is refused before its pixels are
    decoded (raise that limit in Python to allow bigger images).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageProblem("no such file") from None
    except OSError as exc:
        raise ImageProblem(f"cannot read: {exc.strerror or exc}") from None
    if path.is_dir():
        raise ImageProblem("is a folder, not an image file")
    if size == 0:
        raise ImageProblem("empty file (0 bytes)")
    try:
        with Image.open(path) as im:
            limit = Image.MAX_IMAGE_PIXELS
            w, h = im.size
            if limit is not None and w * h > limit:
                raise ImageProblem(_bomb_message(w, h, limit))
            if w < 1 or h < 1:
                raise ImageProblem(f"image has no pixels ({w}x{h})")
            im.load()
            return to_rgb(ImageOps.exif_transpose(im))  # a phone photo's EXIF orientation: upright pixels
    except ImageProblem:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageProblem(_bomb_message_from(exc)) from None
    except UnidentifiedImageError:
        raise ImageProblem("not an image file Pillow can read (unknown format or corrupt header)") from None
    except PermissionError:
        raise ImageProblem("permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageProblem(f"corrupt or truncated image data: {exc}") from None
    except MemoryError:
        raise ImageProblem("out of memory while decoding") from None


GUARD = "not decoded (Pillow's decompression-bomb guard, PIL.Image.MAX_IMAGE_PIXELS)"


def _bomb_message(w: int, h: int, limit: int) -> str:
    return f"too large: {w}x{h} = {w * h:,} pixels, over the limit of {limit:,}; {GUARD}"


def _bomb_message_from(exc: Exception) -> str:
    return f"too large: {exc}; {GUARD}"


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: alpha composited onto white, 16-bit grey scaled to 8 bits, CMYK/YCbCr/P converted."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        grey = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        grey = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im if mode == "RGB" else im.convert("RGB")


def resized_size(w: int, h: int, shorter: int) -> tuple[int, int]:
    """Size with the shorter side ``shorter`` and the aspect ratio kept (longer side rounded)."""
    if w <= h:
        return shorter, max(1, round(h * shorter / w))
    return max(1, round(w * shorter / h)), shorter


def crop_origins(w: int, h: int, crop: int, ten_crop: bool) -> list[tuple[int, int]]:
    """Top-left corners of the crops in a ``w`` x ``h`` image: the centre, or 4 corners + centre."""
    centre = ((w - crop) // 2, (h - crop) // 2)
    if not ten_crop:
        return [centre]
    return [(0, 0), (w - crop, 0), (0, h - crop), (w - crop, h - crop), centre]


def crops(im: Image.Image, resize: int | None, crop: int, ten_crop: bool = False) -> np.ndarray:
    """uint8 crops of an RGB image, ``(n, crop, crop, 3)``: 1 centre crop, or 10 (5 crops + their mirrors).

    ``resize``: the shorter side is resized to this first (skipped when it
    already is); ``None`` keeps the size, except that an image smaller than
    ``crop`` is enlarged so that its shorter side is ``crop``.
    """
    w, h = im.size
    shorter = resize if resize is not None else max(min(w, h), crop)
    nw, nh = (w, h) if min(w, h) == shorter else resized_size(w, h, shorter)
    out = []
    for left, top in crop_origins(nw, nh, crop, ten_crop):
        if (nw, nh) == (w, h):
            piece = im.crop((left, top, left + crop, top + crop))
        else:
            sx, sy = w / nw, h / nh
            box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
            piece = im.resize((crop, crop), Image.Resampling.BILINEAR, box=box)
        out.append(np.asarray(piece, dtype=np.uint8))
        if ten_crop:
            out.append(np.asarray(ImageOps.mirror(piece), dtype=np.uint8))
    if ten_crop:  # order: 5 crops, then their 5 mirrors
        out = out[0::2] + out[1::2]
    return np.stack(out)
