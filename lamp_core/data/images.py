"""Decoding untrusted images one at a time, within a memory budget for the decoded total.

A folder or zip can hold thousands of images of up to MAX_PIXELS each; decoding them all before
resizing took 6.6 GB for a 4.8 MB zip of 40 flat 6000x5999 PNGs. Here each image is decoded,
resized to the training size at once and dropped before the next one is read, so the transient
cost is one full-size image (JPEGs are decoded at a reduced scale through Pillow's draft mode).
What stays is small: uint8 (C, size, size) per image, turned into one float32 tensor at the end.

The decoded total (the float32 tensors of a data set: images, plus masks) is held to a budget,
`decoded_budget_bytes()`: $LAMP_DECODE_BUDGET_MB, default 512 MB. A data set over it is refused
before anything is decoded (or at the first colour image, when colour triples the total), with a
one-line reason that says how to fit: a smaller image size, fewer images, or grey images. The
budget does not change any result, only whether a data set is accepted, so it is a server setting
and not part of a run's configuration.

Image sizes are checked per image from the header before any pixel is decoded; Pillow's
process-wide `Image.MAX_IMAGE_PIXELS` is left as it is.
"""
from __future__ import annotations

import io
import os

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .common import DataError

MAX_PIXELS = 36_000_000               # e.g. 6000 x 6000; larger headers are refused unread
DEFAULT_BUDGET_MB = 512               # decoded float32 tensors of one data set
BUDGET_ENV = "LAMP_DECODE_BUDGET_MB"
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
REDUCING_GAP = 3.0                    # Pillow: reduce by whole factors while >= 3x the target


def decoded_budget_bytes() -> int:
    """The budget for one data set's decoded images, in bytes ($LAMP_DECODE_BUDGET_MB, default 512)."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return DEFAULT_BUDGET_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb > 0:
        raise DataError(f"{BUDGET_ENV}={raw!r} is not a positive number of MB: set it to e.g. 512")
    return int(mb * (1 << 20))


def decoded_bytes(images: int, channels: int, size: int, masks: int = 0) -> int:
    """Bytes of the float32 tensors that hold `images` (C, size, size) images and `masks` masks."""
    return (images * channels + masks) * size * size * 4


def check_budget(where: str, images: int, channels: int, size: int, masks: int = 0, *,
                 colour: bool = False) -> None:
    """Refuse a data set whose decoded tensors would exceed the budget, saying how to fit it."""
    need, budget = decoded_bytes(images, channels, size, masks), decoded_budget_bytes()
    if need <= budget:
        return
    fit = max(1, int(budget // max(decoded_bytes(1, channels, size, 1 if masks else 0), 1)))
    kind = "colour " if colour else ""
    raise DataError(
        f"{where}: {images} {kind}images at {size}x{size} px decode to {need / (1 << 20):,.0f} MB, over the "
        f"{budget >> 20} MB budget for decoded images: choose a smaller image size, at most about {fit} "
        f"images (caps on training and test images), or grey images")


def image_is_grey(img: Image.Image) -> bool:
    return img.mode in GREY_MODES or (img.mode == "P" and img.palette is not None and img.palette.mode == "L")


def decode_image(data: bytes, name: str, size: int, channels: int = 0, *,
                 is_mask: bool = False) -> tuple[np.ndarray, bool]:
    """Untrusted image bytes -> (uint8 (C, size, size), is_grey). C is `channels` (1 or 3), or
    for channels=0 the image's own: 1 for grey modes, 3 otherwise. Masks are 1 channel, 0/255,
    resized with nearest neighbours. Transparent pixels are composited onto black."""
    try:
        img = Image.open(io.BytesIO(data))    # lazy: reads the header only
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise DataError(f"{name} is {w}x{h} pixels, over the {MAX_PIXELS:,}-pixel limit: shrink it")
        if img.format == "JPEG" and not is_mask:
            # decode at 1/2, 1/4 or 1/8 scale while that still leaves the reducing gap's margin
            img.draft(img.mode, (int(size * REDUCING_GAP), int(size * REDUCING_GAP)))
        img.load()
    except DataError:
        raise
    except Image.DecompressionBombError:
        raise DataError(f"{name} is over the pixel limit (a decompression bomb?): shrink it") from None
    except OSError as exc:
        if "truncated" in str(exc).lower():
            raise DataError(f"{name} is truncated (the file ends early): export it again or remove it") from None
        raise DataError(f"{name} is not a readable image ({type(exc).__name__}): replace or remove it") from None
    except (UnidentifiedImageError, SyntaxError, ValueError, EOFError) as exc:
        raise DataError(f"{name} is not a readable image ({type(exc).__name__}): replace or remove it") from None
    grey = image_is_grey(img)
    try:
        small = _resized(img, size, "L" if is_mask or channels == 1 or (channels == 0 and grey) else "RGB",
                         is_mask)
    except (OSError, ValueError) as exc:
        raise DataError(f"{name} could not be converted ({type(exc).__name__}: {exc}): save it as PNG") from None
    finally:
        img.close()
    arr = np.asarray(small, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, size, size)
    return np.array(arr, dtype=np.uint8, order="C"), grey        # own, writable copy


def _resized(img: Image.Image, size: int, out_mode: str, is_mask: bool) -> Image.Image:
    """A full-size decoded image -> `out_mode` at (size, size); the full-size copies made on the
    way are dropped as soon as the next one exists, so at most two are alive at once."""
    target = (size, size)
    if is_mask:
        # nearest neighbours keep masks binary; Pillow does not pre-reduce for NEAREST
        return img.convert("L").resize(target, Image.NEAREST)
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        lo, hi = img.getextrema()
        if mode == "F":
            top = 1.0 if hi <= 1.0 else 255.0
        else:
            top = 65535.0 if mode.startswith("I;16") or hi > 255 else 255.0
        full = img.convert("F")                                    # (H, W) float32, resizable
        small = full.resize(target, Image.BILINEAR, reducing_gap=REDUCING_GAP)
        del full
        arr = np.clip(np.asarray(small, dtype=np.float64) / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert(out_mode)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img if mode == "RGBA" else img.convert("RGBA")
        # Pillow resizes RGBA with premultiplied alpha, so compositing the small image onto
        # black gives what compositing the full one would have given
        small = rgba.resize(target, Image.BILINEAR, reducing_gap=REDUCING_GAP)
        del rgba
        black = Image.new("RGBA", target, (0, 0, 0, 255))
        return Image.alpha_composite(black, small).convert(out_mode)
    if mode not in ("L", "RGB"):
        img = img.convert(out_mode)                                # P, 1, CMYK, YCbCr, ...
    small = img.resize(target, Image.BILINEAR, reducing_gap=REDUCING_GAP)
    return small.convert(out_mode)


def stack_uint8(arrays: list[np.ndarray], channels: int, size: int, *, is_mask: bool = False) -> torch.Tensor:
    """uint8 (C_i, size, size) arrays -> one float32 (N, channels, size, size) tensor in [0, 1],
    grey ones repeated to 3 channels where needed; filled in place, no second full copy."""
    out = torch.empty((len(arrays), channels, size, size), dtype=torch.float32)
    for i, arr in enumerate(arrays):
        t = torch.from_numpy(arr)                                  # (C_i, size, size) uint8
        if is_mask:
            out[i] = (t > 127).float()
        else:
            out[i] = t.float().div_(255.0).expand(channels, size, size)
    return out
