"""SR training and evaluation data: HR images (or video frames) paired with bicubic LR.

LR images are made with the protocol's MATLAB-compatible `imresize` from modcropped HR, exactly
as the benchmarks do, and cached on disk (``.npy``, loaded with ``allow_pickle=False``) so epochs
and later runs do not redo it. Patches are drawn with a caller-supplied `torch.Generator`, so a
batch is a pure function of (seed, step): training resumes exactly.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from adasr.data.imresize import imresize, modcrop
from adasr.errors import InputError
from adasr.frames import to_frame as to_uint8  # noqa: F401 - older name, re-exported
from adasr.frames import to_tensor
from adasr.paths import cache_dir  # noqa: F401 - re-exported (torch-free, with the other paths)

if TYPE_CHECKING:
    import torch

__all__ = ["IMAGE_SUFFIXES", "PatchSampler", "SRPair", "cache_dir", "gray_of", "iter_tensors", "list_images",
           "load_image_pairs", "load_pairs", "load_video_pairs", "make_lr"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


@dataclass(frozen=True)
class SRPair:
    """One HR image (uint8 HxWx3, modcropped) and its bicubic LR (uint8 h x w x 3).

    `gray` marks a grayscale source (its three channels are equal): the protocol scores such an
    image on its own values, not on a [16, 235] luma of equal RGB channels.
    """

    name: str
    hr: np.ndarray
    lr: np.ndarray
    gray: bool = False


def make_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic LR of an (already modcropped) uint8 HR image, as the SR protocol makes it."""
    return imresize(hr, 1.0 / scale)


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly inside `folder` (sorted); InputError if none or not a folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"dataset folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"dataset folder has no images ({', '.join(IMAGE_SUFFIXES)}): {folder}")
    return files


def _cached_lr(path: Path, hr: np.ndarray, scale: int, use_cache: bool) -> np.ndarray:
    if not use_cache:
        return make_lr(hr, scale)
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|x{scale}|v1".encode()).hexdigest()[:24]
    file = cache_dir() / "lr" / f"{key}.npy"
    if file.is_file():
        try:
            lr = np.load(file, allow_pickle=False)
            if lr.dtype == np.uint8 and lr.shape == (hr.shape[0] // scale, hr.shape[1] // scale, 3):
                return lr
        except (OSError, ValueError):
            pass  # a damaged cache entry is rebuilt below
    lr = make_lr(hr, scale)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, lr, allow_pickle=False)
        os.replace(tmp, file)
    except OSError:
        pass  # caching is an optimisation; an unwritable cache folder must not stop training
    return lr


def load_image_pairs(folder: str | os.PathLike[str], scale: int, *, limit: int | None = None,
                     use_cache: bool = True) -> list[SRPair]:
    """HR images of `folder` (RGB uint8, modcropped to `scale`) with their cached bicubic LR."""
    from adasr.images import read_image

    pairs = []
    for path in list_images(folder)[:limit]:
        img = read_image(path)
        rgb = img.rgb if img.bit_depth == 8 else (img.rgb.astype(np.float64) / 257.0).round().astype(np.uint8)
        hr = modcrop(rgb, scale)
        if min(hr.shape[:2]) < scale * 4:
            raise InputError(f"image too small for x{scale} training or evaluation: {path}")
        pairs.append(SRPair(path.stem, hr, _cached_lr(path, hr, scale, use_cache), gray=img.gray))
    return pairs


def load_video_pairs(path: str | os.PathLike[str], scale: int, *, every: int = 1,
                     max_frames: int | None = None) -> list[SRPair]:
    """Frames of a video (every `every`-th, at most `max_frames`) with their bicubic LR."""
    from adasr.video import read_frames

    if every < 1:
        raise InputError(f"frame step must be at least 1, got {every}")
    pairs = []
    for index, frame in enumerate(read_frames(path)):
        if index % every:
            continue
        hr = modcrop(frame, scale)
        pairs.append(SRPair(f"{Path(path).stem}-{index:05d}", hr, make_lr(hr, scale)))
        if max_frames is not None and len(pairs) >= max_frames:
            break
    if not pairs:
        raise InputError(f"video has no frames: {path}")
    return pairs


def load_pairs(source: str | os.PathLike[str], scale: int, **kwargs) -> list[SRPair]:
    """Image folder or video file, whichever `source` is."""
    source = Path(source)
    if source.is_file():
        return load_video_pairs(source, scale, **{k: v for k, v in kwargs.items() if k in ("every", "max_frames")})
    return load_image_pairs(source, scale, **{k: v for k, v in kwargs.items() if k in ("limit", "use_cache")})


def gray_of(rgb: np.ndarray) -> np.ndarray:
    """One channel of an RGB uint8 image: the rounded mean, as `write_image(gray=True)` stores it."""
    return np.round(rgb.astype(np.float64).mean(axis=2)).astype(np.uint8)


class PatchSampler:
    """Random LR/HR patch batches with flips and 90-degree rotations.

    `batch(gen)` is deterministic given the generator's state; the caller seeds one generator
    per step from (seed, step), so a resumed run draws the same batches.
    """

    def __init__(self, pairs: Sequence[SRPair], scale: int, patch: int, batch_size: int, augment: bool = True):
        if not pairs:
            raise InputError("no training images")
        small = [p.name for p in pairs if min(p.lr.shape[:2]) < patch]
        if small:
            raise InputError(f"LR patch {patch} is larger than image(s) {', '.join(small[:3])}")
        self.pairs = list(pairs)
        self.scale, self.patch, self.batch_size, self.augment = scale, patch, batch_size, augment
        import torch

        # Tensors once, so a batch only slices.
        self._lr = [torch.from_numpy(np.array(p.lr)).permute(2, 0, 1) for p in self.pairs]
        self._hr = [torch.from_numpy(np.array(p.hr)).permute(2, 0, 1) for p in self.pairs]

    def batch(self, gen: torch.Generator, part: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of `batch_size` patches, or only the items `part` of it (a data-parallel
        rank's share): every random number of the whole batch is drawn either way, so the
        generator ends in the same state and the parts of all ranks make up the whole batch."""
        import torch

        p, s = self.patch, self.scale
        lrs, hrs = [], []
        keep = range(self.batch_size)[part] if part is not None else range(self.batch_size)
        idx = torch.randint(len(self.pairs), (self.batch_size,), generator=gen)
        for item, i in enumerate(idx.tolist()):
            lr, hr = self._lr[i], self._hr[i]
            y = int(torch.randint(lr.shape[1] - p + 1, (1,), generator=gen))
            x = int(torch.randint(lr.shape[2] - p + 1, (1,), generator=gen))
            flip = rot = 0
            if self.augment:
                flip, rot = torch.randint(2, (1,), generator=gen).item(), torch.randint(4, (1,), generator=gen).item()
            if item not in keep:
                continue
            lp = lr[:, y:y + p, x:x + p]
            hp = hr[:, y * s:(y + p) * s, x * s:(x + p) * s]
            if flip:
                lp, hp = lp.flip(-1), hp.flip(-1)
            if rot:
                lp, hp = lp.rot90(rot, (1, 2)), hp.rot90(rot, (1, 2))
            lrs.append(lp)
            hrs.append(hp)
        return torch.stack(lrs).float().div_(255.0), torch.stack(hrs).float().div_(255.0)


def iter_tensors(pairs: Iterable[SRPair]) -> Iterable[tuple[str, torch.Tensor, np.ndarray]]:
    for pair in pairs:
        yield pair.name, to_tensor(pair.lr), pair.hr
