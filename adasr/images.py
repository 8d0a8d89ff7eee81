"""Reading and writing still images (Pillow, plus PyAV for 16-bit colour PNG).

Data model
----------
`read_image` returns an `Image` whose `rgb` is always HxWx3 (uint8 for 8-bit sources, uint16 for
16-bit ones). Grayscale sources are expanded to three equal channels and flagged `gray=True`, so
the upscaler only ever sees RGB; `write_image(..., gray=True)` folds the channels back to one
(their rounded mean). Palette images become RGB, or RGBA when the palette has transparency.
CMYK, YCbCr, HSV and 1-bit images are converted to RGB / L. EXIF orientation is applied on read
(the pixels come back the way a viewer shows them) and no orientation tag is written back.

16-bit: grayscale PNG/TIFF ('I;16', 'I;16B', 'I' with values in 0..65535) -> uint16. Pillow
reduces 16-bit *colour* PNGs (RGB, RGBA, gray+alpha) to 8 bits, so those are decoded with FFmpeg
(PyAV) instead and keep all 16 bits. 16-bit colour TIFF is read at 8 bits (Pillow limitation).
Refused with InputError: 32-bit float ('F'), 32-bit integer images whose values exceed 16 bits,
multi-frame files (animated GIF/PNG/WebP, multi-page TIFF; a camera's multi-picture JPEG
(MPO) is read as its primary image), images larger than `max_pixels`.

Alpha
-----
Alpha is kept apart from the colour: `Image.alpha` is HxW with the same dtype as `rgb`, or None.
The upscaler runs the network on `rgb` only and enlarges `alpha` separately with bicubic
interpolation (the caller does that; this module only carries the data), then passes both to
`write_image`. Colour is stored straight (not premultiplied), as in PNG.

Writing
-------
`write_image(path, rgb, *, alpha=None, gray=False, bit_depth=None, quality=95)`; the format
comes from the suffix:

=========  ==========  ======  =====================================================
suffix     bit depth   alpha   notes
=========  ==========  ======  =====================================================
.png       8 or 16     yes     lossless; 16-bit written by a small built-in encoder
.jpg/.jpeg 8           no      alpha -> OutputError (use .png); 16-bit rounded to 8
.webp      8           yes     lossy at `quality` (100 = lossless); gray stored as RGB
.bmp       8           no      alpha -> OutputError (readers ignore BMP alpha)
.tif/.tiff 8, 16 gray  yes     16-bit colour rounded to 8 bits (Pillow limitation)
=========  ==========  ======  =====================================================

Every write goes through `adasr._atomic.atomic_path`: the final name only ever holds a complete
file. An unknown suffix, an unwritable folder or a failing encoder raise OutputError.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError, features

from adasr._atomic import atomic_path, check_writable
from adasr.errors import InputError, OutputError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "WRITABLE_IMAGE_SUFFIXES",
    "Image",
    "float_to_uint",
    "is_image_path",
    "read_image",
    "write_image",
]

#: Images with more pixels than this are refused (decompression-bomb guard), 100 megapixels.
DEFAULT_MAX_PIXELS = 100_000_000

#: Suffixes `read_image` accepts (lower case).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".tif", ".tiff", ".webp", ".gif",
     ".ppm", ".pgm", ".pbm", ".pnm", ".tga"}
)

_PIL_FORMAT = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}

#: Suffixes `write_image` accepts (lower case); WebP only when Pillow was built with it.
WRITABLE_IMAGE_SUFFIXES = frozenset(
    s for s, f in _PIL_FORMAT.items() if f != "WEBP" or features.check("webp")
)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_ORIENTATION = 0x0112


@dataclass
class Image:
    """A decoded image.

    rgb:       uint8 or uint16 array, HxWx3, RGB (grayscale expanded to 3 equal channels).
    alpha:     same dtype as rgb, HxW, or None when the source has no alpha channel.
    mode:      the source's Pillow mode ('RGB', 'L', 'RGBA', 'LA', 'P', 'I;16', 'CMYK', ...);
               16-bit colour PNGs report Pillow's mode ('RGB', 'RGBA', 'LA') with bit_depth 16.
    bit_depth: 8 or 16, matching rgb.dtype.
    gray:      True when the source had no colour (L, LA, I;16, 1-bit).
    icc_profile: the embedded ICC profile bytes, if any (write_image can store it again).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    mode: str = "RGB"
    bit_depth: int = 8
    gray: bool = False
    icc_profile: bytes | None = None

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def max_value(self) -> int:
        return 65535 if self.bit_depth == 16 else 255

    def to_float(self) -> np.ndarray:
        """The colour as float32 HxWx3 in [0, 1]."""
        return self.rgb.astype(np.float32) / np.float32(self.max_value)

    def alpha_to_float(self) -> np.ndarray | None:
        """The alpha channel as float32 HxW in [0, 1], or None."""
        if self.alpha is None:
            return None
        return self.alpha.astype(np.float32) / np.float32(self.max_value)


def float_to_uint(x: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Round float data in [0, 1] to uint8 (bit_depth 8) or uint16 (bit_depth 16), clipping."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, not {bit_depth}")
    top = 65535.0 if bit_depth == 16 else 255.0
    out = np.rint(np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0) * np.float32(top))
    return out.astype(np.uint16 if bit_depth == 16 else np.uint8)


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True when the file name has an image suffix `read_image` understands."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


# --------------------------------------------------------------------------------------------
# reading


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image:
    """Decode `path` fully into an `Image` (see the module docstring for modes and rules).

    Raises InputError for a missing file, a directory, an unreadable, truncated or corrupt file,
    an unsupported mode, a multi-frame file, or more than `max_pixels` pixels (None: no limit
    beyond Pillow's own global guard).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"image not found: {path}")
    if path.is_dir():
        raise InputError(f"expected an image file, got a directory: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as im:
                return _decode(path, im, max_pixels)
    except InputError:
        raise
    except PILImage.DecompressionBombError as e:
        raise InputError(f"image too large (decompression-bomb guard): {path}: {e}") from None
    except UnidentifiedImageError:
        raise InputError(f"not a recognised image file: {path}") from None
    except PermissionError:
        raise InputError(f"cannot read image (permission denied): {path}") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, MemoryError) as e:
        raise InputError(f"corrupt or unreadable image: {path}: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def _decode(path: Path, im: PILImage.Image, max_pixels: int | None) -> Image:
    w, h = im.size
    if max_pixels is not None and w * h > max_pixels:
        raise InputError(
            f"image too large: {path} is {w}x{h} = {w * h / 1e6:.1f} megapixels, "
            f"limit is {max_pixels / 1e6:.1f} (decompression-bomb guard)"
        )
    if getattr(im, "n_frames", 1) > 1 and im.format != "MPO":  # MPO: camera JPEG + extras; frame 0 is the photo
        raise InputError(
            f"multi-frame images (animation, multi-page) are not supported: {path} "
            f"has {im.n_frames} frames"
        )
    source_mode = im.mode
    icc = im.info.get("icc_profile") or None
    im.load()  # full decode: truncated or corrupt data fails here, not later
    try:  # after load(): PNG may carry its eXIf chunk behind the image data
        orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a broken EXIF block must not make an otherwise fine image unreadable
        orientation = 1

    if im.format == "PNG" and _is_16bit_colour_png(path):
        rgb, alpha, gray = _decode_png16_with_ffmpeg(path, w, h)
        bit_depth = 16
    else:
        rgb, alpha, gray, bit_depth = _from_pil(path, im)
    rgb = _orient(rgb, orientation)
    alpha = _orient(alpha, orientation) if alpha is not None else None
    return Image(
        rgb=np.ascontiguousarray(rgb),
        alpha=None if alpha is None else np.ascontiguousarray(alpha),
        mode=source_mode,
        bit_depth=bit_depth,
        gray=gray,
        icc_profile=icc,
    )


def _from_pil(path: Path, im: PILImage.Image) -> tuple[np.ndarray, np.ndarray | None, bool, int]:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return _gray3(np.asarray(im).astype(np.uint16)), None, True, 16
    if mode == "I":
        a = np.asarray(im)
        if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
            raise InputError(
                f"unsupported image: {path} holds 32-bit integer values outside 0..65535"
            )
        return _gray3(a.astype(np.uint16)), None, True, 16
    if mode == "F":
        raise InputError(f"unsupported image mode 'F' (32-bit float): {path}")
    if mode == "1":
        im, mode = im.convert("L"), "L"
    elif mode == "La":
        im, mode = im.convert("LA"), "LA"
    elif mode in ("P", "PA"):
        has_alpha = (
            mode == "PA"
            or "transparency" in im.info
            or (im.palette is not None and im.palette.mode == "RGBA")
        )
        mode = "RGBA" if has_alpha else "RGB"
        im = im.convert(mode)
    elif mode in ("RGBa", "RGBX", "CMYK", "YCbCr", "HSV", "LAB"):
        target = "RGBA" if mode == "RGBa" else "RGB"
        try:
            im = im.convert(target)
        except ValueError:
            raise InputError(f"unsupported image mode '{mode}': {path}") from None
        mode = target

    a = np.asarray(im)
    if mode == "L":
        return _gray3(a), None, True, 8
    if mode == "LA":
        return _gray3(a[..., 0]), a[..., 1].copy(), True, 8
    if mode == "RGB":
        return a, None, False, 8
    if mode == "RGBA":
        return a[..., :3].copy(), a[..., 3].copy(), False, 8
    raise InputError(f"unsupported image mode '{im.mode}': {path}")


def _gray3(g: np.ndarray) -> np.ndarray:
    return np.repeat(g[..., None], 3, axis=2)


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) like PIL.ImageOps.exif_transpose."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return a[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(a, 1)
    return a


def _is_16bit_colour_png(path: Path) -> bool:
    """True for a PNG with 16-bit RGB, RGBA or gray+alpha samples (Pillow would drop to 8)."""
    with open(path, "rb") as f:
        head = f.read(29)
    if len(head) < 29 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return False
    bit_depth, colour_type = head[24], head[25]
    return bit_depth == 16 and colour_type in (2, 4, 6)


_PACKED16 = {"rgb48be": 3, "rgba64be": 4, "ya16be": 2, "rgb48le": 3, "rgba64le": 4, "ya16le": 2}


def _decode_png16_with_ffmpeg(path: Path, w: int, h: int) -> tuple[np.ndarray, np.ndarray | None, bool]:
    import av  # imported lazily: only 16-bit colour PNGs need FFmpeg

    try:
        with av.open(str(path)) as c:
            frames = list(c.decode(video=0))
    except av.FFmpegError as e:
        raise InputError(f"corrupt or unreadable image: {path}: {_one_line(e)}") from None
    if len(frames) != 1:
        raise InputError(f"corrupt or unreadable image: {path}: no decodable image data")
    frame = frames[0]
    fmt = frame.format.name
    if fmt not in _PACKED16 or (frame.width, frame.height) != (w, h):
        raise InputError(f"unsupported 16-bit PNG layout '{fmt}': {path}")
    ch = _PACKED16[fmt]
    plane = frame.planes[0]
    raw = np.frombuffer(bytes(plane), dtype=np.uint8).reshape(h, plane.line_size)
    px = raw[:, : w * ch * 2].copy().view(">u2" if fmt.endswith("be") else "<u2")
    px = px.reshape(h, w, ch).astype(np.uint16)
    if ch == 2:
        return _gray3(px[..., 0]), px[..., 1].copy(), True
    if ch == 4:
        return px[..., :3].copy(), px[..., 3].copy(), False
    return px, None, False


# --------------------------------------------------------------------------------------------
# writing


def write_image(
    path: str | os.PathLike[str],
    rgb: np.ndarray | Image,
    *,
    alpha: np.ndarray | None = None,
    gray: bool | None = None,
    bit_depth: int | None = None,
    quality: int = 95,
    icc_profile: bytes | None = None,
) -> Path:
    """Write an image atomically; the format follows the suffix (table in the module docstring).

    rgb:       uint8/uint16 HxWx3 (or HxW gray), or an `Image` whose fields provide the defaults
               for alpha, gray, bit_depth and icc_profile.
    alpha:     HxW, same dtype as rgb, or None.
    gray:      store one channel (the rounded mean of R, G, B) where the format allows it.
    bit_depth: 8 or 16; defaults to rgb's dtype. Values are rescaled when it differs
               (16 -> 8 rounds x/257). Formats without 16-bit support get 8 bits.
    quality:   JPEG/WebP quality 1..100 (WebP 100 = lossless).
    Returns the path written. Raises OutputError (unknown suffix, alpha in JPEG, unwritable
    folder, encoder failure); ValueError for arrays of the wrong shape or dtype (a caller bug).
    """
    path = Path(path)
    if isinstance(rgb, Image):
        img = rgb
        rgb = img.rgb
        alpha = img.alpha if alpha is None else alpha
        gray = img.gray if gray is None else gray
        bit_depth = img.bit_depth if bit_depth is None else bit_depth
        icc_profile = img.icc_profile if icc_profile is None else icc_profile
    gray = bool(gray)

    suffix = path.suffix.lower()
    fmt = _PIL_FORMAT.get(suffix)
    if fmt is None or suffix not in WRITABLE_IMAGE_SUFFIXES:
        raise OutputError(
            f"cannot write image {path}: unknown image suffix '{path.suffix}' "
            f"(use one of {', '.join(sorted(WRITABLE_IMAGE_SUFFIXES))})"
        )
    if alpha is not None and fmt in ("JPEG", "BMP"):
        raise OutputError(
            f"cannot write {path}: {fmt} cannot store an alpha channel; use .png, .webp or .tiff"
        )
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, not {quality}")

    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = _gray3(rgb)
        gray = True
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"rgb must be HxWx3 (or HxW), got shape {rgb.shape}")
    if rgb.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"rgb must be uint8 or uint16, got {rgb.dtype}")
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.shape != rgb.shape[:2]:
            raise ValueError(f"alpha must be HxW {rgb.shape[:2]}, got shape {alpha.shape}")
        if alpha.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"alpha must be uint8 or uint16, got {alpha.dtype}")
    depth = bit_depth if bit_depth is not None else (16 if rgb.dtype == np.uint16 else 8)
    if depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, not {depth}")
    if fmt == "PNG":
        pass
    elif fmt == "TIFF" and gray and alpha is None:
        pass  # Pillow writes 16-bit gray TIFF (I;16)
    else:
        depth = 8

    color = _to_depth(rgb, depth)
    a = None if alpha is None else _to_depth(alpha, depth)
    if gray:
        g = color.astype(np.uint32).sum(axis=2)
        color = ((g + 1) // 3).astype(color.dtype)  # rounded mean; equal channels stay exact

    check_writable(path)
    try:
        with atomic_path(path) as tmp:
            if fmt == "PNG" and depth == 16:
                tmp.write_bytes(_encode_png16(color, a, icc_profile))
            else:
                _save_with_pil(tmp, fmt, color, a, quality, icc_profile)
    except OutputError:
        raise
    except (OSError, ValueError) as e:
        raise OutputError(f"cannot write image {path}: {_one_line(e)}") from None
    return path


def _to_depth(a: np.ndarray, depth: int) -> np.ndarray:
    if depth == 16:
        return a.astype(np.uint16) * np.uint16(257) if a.dtype == np.uint8 else a
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return a


def _save_with_pil(
    tmp: Path, fmt: str, color: np.ndarray, alpha: np.ndarray | None, quality: int,
    icc: bytes | None,
) -> None:
    if color.ndim == 2:  # gray
        if color.dtype == np.uint16:
            im = PILImage.fromarray(color)  # mode I;16 (TIFF only; 16-bit PNG has its own path)
        elif alpha is not None and fmt != "WEBP":
            im = PILImage.fromarray(np.dstack([color, alpha]), "LA")
        else:
            im = PILImage.fromarray(color, "L")
            if fmt == "WEBP":  # WebP has no gray
                im = im.convert("RGBA" if alpha is not None else "RGB")
                if alpha is not None:
                    im.putalpha(PILImage.fromarray(alpha, "L"))
    elif alpha is not None:
        im = PILImage.fromarray(np.dstack([color, alpha]), "RGBA")
    else:
        im = PILImage.fromarray(np.ascontiguousarray(color), "RGB")
    kw: dict[str, object] = {}
    if icc and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kw["icc_profile"] = icc
    if fmt == "JPEG":
        kw.update(quality=int(quality), subsampling=0 if quality >= 90 else 2)
    elif fmt == "WEBP":
        kw.update(quality=int(quality), lossless=quality >= 100)
    elif fmt == "PNG":
        kw.update(compress_level=6)
    elif fmt == "TIFF":
        kw.update(compression="tiff_deflate")
    im.save(tmp, format=fmt, **kw)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _encode_png16(color: np.ndarray, alpha: np.ndarray | None, icc: bytes | None) -> bytes:
    """A 16-bit PNG (gray, gray+alpha, RGB or RGBA), every row with the 'Up' filter."""
    planes = [color] if color.ndim == 2 else [color[..., i] for i in range(3)]
    if alpha is not None:
        planes.append(alpha)
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[len(planes)]
    h, w = planes[0].shape
    px = np.stack(planes, axis=-1).astype(">u2").view(np.uint8).reshape(h, -1)
    up = px.copy()
    up[1:] -= px[:-1]  # uint8 arithmetic wraps modulo 256, as the PNG 'Up' filter requires
    rows = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1)
    out = [_PNG_SIGNATURE, _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))]
    if icc:
        out.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    out.append(_png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)
