"""Turning whatever a user hands us into a clean RGB array, and the original apps' resizing rules."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.env import env_int

ImageInput = Image.Image | np.ndarray | str | Path | bytes

# A bound on what we decode: 40 MP is a large phone photo; beyond that is a mistake or an attack.
DEFAULT_MAX_PIXELS = 40_000_000


def max_pixels() -> int:
    """The largest image decoded anywhere (CNET_MAX_IMAGE_PIXELS, 40 MP by default), read when an image is checked."""
    return env_int("CNET_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS, 1, 10**10)
# Bounds on what we *produce* (maps, resized inputs): the longest side (the app passes its own, e.g. 1024 on public
# deployments) and the aspect ratio. A 1000x1 image scaled so its short side is 512 would be 512000x512: 1 GB.
DEFAULT_MAX_SIDE = 2048
MAX_ASPECT = 16


class ImageInputError(ValueError):
    """The input is not an image we can use; the message says why."""


def open_image(source: ImageInput, *, what: str = "image", formats: tuple[str, ...] | None = None) -> Image.Image:
    """Open a path, bytes or PIL image, refusing non-images and oversized images before decoding them.

    `formats` (e.g. ("PNG", "JPEG", "WEBP")) limits what a file may be, judged by its content, not its name."""
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        return Image.fromarray(to_rgb_array(source, what=what))
    else:
        try:  # only the accepted formats' readers are tried: nothing is decoded on open
            image = _open_lazily(source, what, formats)
        except ImageInputError:
            other = _other_format(source) if formats else None
            if other:
                raise ImageInputError(f"{what}: a {other} file; accepted: {', '.join(formats)}") from None
            raise
    # Phones save JPEGs as MPO (a JPEG with a second, preview or depth frame): take the first frame, the photo.
    is_mpo = getattr(image, "format", None) == "MPO"
    accepted = image.format in (formats or ()) or (is_mpo and "JPEG" in (formats or ()))
    if formats is not None and not isinstance(source, Image.Image) and not accepted:
        raise ImageInputError(f"{what}: a {image.format or 'unknown'} file; accepted: {', '.join(formats)}")
    if is_mpo:
        image.seek(0)
    elif getattr(image, "n_frames", 1) > 1 and formats is not None:
        raise ImageInputError(f"{what}: an animated image ({image.n_frames} frames); upload a single picture")
    _check_size(image.size, what)
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageInputError(f"{what}: the image data is damaged or truncated ({err})") from None
    return image


def _open_lazily(source: str | Path | bytes | io.BytesIO, what: str,
                 formats: tuple[str, ...] | None = None) -> Image.Image:
    """Pillow's Image.open: the header is read, the pixels are not (for the formats given, only their readers are
    tried: Pillow's ICO reader, for one, decodes on open). Decompression bombs (over `max_pixels()`, where Pillow would
    only warn, or over twice that, where it errs) are refused with one message naming their size."""
    try:
        with warnings.catch_warnings():  # above PIL's limit it only warns: make it an error here too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source,
                              formats=list(formats) if formats else None)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(pixels.group(1)) / 1e6:.0f} MP, " if pixels else ""
        raise ImageInputError(f"{what}: refused before decoding: {size}over the {_limit_mp()} limit") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageInputError(f"{what}: not a readable image ({err})") from None


# Formats whose Pillow readers read only the header on open: tried to name a refused upload's format.
_NAMED_FORMATS = ("GIF", "TIFF", "BMP")


def _other_format(source: str | Path | bytes | io.BytesIO) -> str | None:
    """The format of a file that none of the accepted readers took, when a reader that decodes nothing names it."""
    for name in _NAMED_FORMATS:
        try:
            with _open_lazily(source, "image", (name,)):
                return name
        except ImageInputError:
            continue
    return None


def image_size(source: str | Path | bytes | io.BytesIO, *, what: str = "image",
               formats: tuple[str, ...] | None = None) -> tuple[int, int]:
    """(width, height) of an image file or its bytes, read from its header without decoding the pixels; an
    unreadable file, one of a format not in `formats`, an empty image or one over `max_pixels()` is refused
    (ImageInputError naming `what`)."""
    image = _open_lazily(source, what, formats)
    try:
        _check_size(image.size, what)
        return image.size
    finally:
        image.close()


def _check_size(size: tuple[int, int], what: str) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageInputError(f"{what}: empty image ({w}x{h})")
    if w * h > max_pixels():
        raise ImageInputError(f"{what}: {w}x{h} is {w * h / 1e6:.0f} MP, over the {_limit_mp()} limit")


def _limit_mp() -> str:
    return f"{max_pixels() / 1e6:.0f} MP"


def check_aspect(h: int, w: int, what: str = "image") -> None:
    """Refuse images too elongated to become a map (longer side over MAX_ASPECT times the shorter one)."""
    if max(h, w) > MAX_ASPECT * min(h, w):
        raise ImageInputError(f"{what}: {w}x{h} px is too elongated (at most {MAX_ASPECT}:1 between its sides); "
                              "crop it first")


def to_rgb_array(source: ImageInput, *, what: str = "image", background: int = 255,
                 formats: tuple[str, ...] | None = None) -> np.ndarray:
    """An HxWx3 uint8 RGB array from any common image (of `formats`, for a file or bytes, when given): EXIF
    rotation applied, 16-bit and float scaled, CMYK/palette converted, transparency composited over `background`
    (white, as a photo would be printed)."""
    if isinstance(source, np.ndarray):
        array = source
    else:
        image = ImageOps.exif_transpose(open_image(source, what=what, formats=formats))
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            array = np.asarray(image)
        else:
            if image.mode not in ("RGB", "RGBA", "L", "LA"):
                image = image.convert("RGBA" if "transparency" in image.info or image.mode == "PA" else "RGB")
            array = np.asarray(image)
    _check_size((array.shape[1], array.shape[0]) if array.ndim >= 2 else (0, 0), what)
    array = _to_uint8(array, what)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ImageInputError(f"{what}: unsupported array shape {array.shape}")
    channels = array.shape[2]
    if channels in (2, 4):  # composite the alpha channel over the background
        array = _composite(array, background)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array)


def _composite(array: np.ndarray, background: int, rows: int = 256) -> np.ndarray:
    """Colour channels of an array with alpha (last channel), composited over a grey level, a block of rows at a
    time: the float temporaries of a 10 MP photo at once took 450 MB, a block of rows takes a few."""
    out = np.empty(array.shape[:2] + (array.shape[2] - 1,), dtype=np.uint8)
    for top in range(0, array.shape[0], rows):
        block = array[top:top + rows]
        alpha = block[:, :, -1:].astype(np.float32) / 255.0
        color = block[:, :, :-1].astype(np.float32)
        out[top:top + rows] = np.clip(color * alpha + background * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)
    return out


def _to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageInputError(f"{what}: the image holds NaN or infinite values")
        scale = 255.0 if array.max(initial=0) <= 1.0 else 1.0
        return np.clip(array * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        top = int(array.max(initial=0))
        if top <= 255:
            return array.astype(np.uint8)
        # 16-bit (or wider) data: keep the full range instead of clipping everything bright to white.
        bits = 16 if top <= 65535 else 32
        return (array.astype(np.float64) / (2**bits - 1) * 255 + 0.5).astype(np.uint8)
    raise ImageInputError(f"{what}: unsupported pixel type {array.dtype}")


def resize_to_resolution(array: np.ndarray, resolution: int, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """The original apps' `resize_image`: scale so the short side is `resolution`, sides rounded to multiples
    of 64 (Lanczos when enlarging, area when shrinking); the long side is capped at `max_side`."""
    h, w = array.shape[:2]
    new_h, new_w = _resolution_size(h, w, resolution, max_side)
    if (new_h, new_w) == (h, w):
        return array
    interpolation = cv2.INTER_LANCZOS4 if new_h * new_w > h * w else cv2.INTER_AREA
    return cv2.resize(array, (new_w, new_h), interpolation=interpolation)


def _resolution_size(h: int, w: int, resolution: int, max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    check_aspect(h, w)
    # Short side to `resolution`, unless that would take the long side past `max_side` (a panorama): then the long
    # side is `max_side` and the short side smaller. Rounding to 64 never crosses a max_side that is a multiple of 64.
    k = min(resolution / min(h, w), max_side / max(h, w))
    return max(64, int(np.round(h * k / 64.0)) * 64), max(64, int(np.round(w * k / 64.0)) * 64)


def output_size(h: int, w: int, *, width: int | None = None, height: int | None = None,
                image_resolution: int | None = None, max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    """(height, width) of the map handed to generation. Both given: exact. One given: the other follows the
    aspect ratio (multiple of 8), and must stay within `max_side`. `image_resolution`: the original apps' rule.
    None: unchanged."""
    if width and height:
        return height, width
    if width or height:
        out_h = height or max(8, int(round(h * width / w / 8)) * 8)
        out_w = width or max(8, int(round(w * height / h / 8)) * 8)
        if max(out_h, out_w) > max_side:
            given = f"width={width}" if width else f"height={height}"
            raise ImageInputError(f"{given} with the map's aspect ratio ({w}x{h}) makes a {out_w}x{out_h} map, "
                                  f"over the {max_side} px limit on a side; give both width and height")
        return out_h, out_w
    if image_resolution:
        return _resolution_size(h, w, image_resolution, max_side)
    return h, w


def fit_map(detected: np.ndarray, height: int, width: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Resize a map to (height, width), centre-cropping first so the aspect ratio is kept, never distorted."""
    h, w = detected.shape[:2]
    if (h, w) == (height, width):
        return detected
    target = width / height
    if abs(w / h - target) > 1e-3:
        if w / h > target:  # too wide: crop the sides
            new_w = max(1, round(h * target))
            x0 = (w - new_w) // 2
            detected = detected[:, x0:x0 + new_w]
        else:
            new_h = max(1, round(w / target))
            y0 = (h - new_h) // 2
            detected = detected[y0:y0 + new_h]
    return cv2.resize(detected, (width, height), interpolation=interpolation)
