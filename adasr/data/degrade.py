"""Streaming degradations: HR -> downscale (area or MATLAB bicubic) -> a real codec round trip.

What a live segment, an SRVC stream or almost any user's video carries is not the clean bicubic
LR of the SR protocol but LR that went through H.264/H.265/AV1 at a modest CRF. This module makes
that input for training and evaluation, with the codecs themselves (PyAV's FFmpeg: libx264,
libx265, SVT-AV1, decoded by FFmpeg's h264/hevc decoders and dav1d):

* `Degradation` is the recipe as a value, parsed from a compact spec such as
  ``h264+h265:crf=18-36,kernel=area+bicubic,clean=0.1`` (training: ranges and choices drawn per
  variant) or ``h264:crf=28,kernel=area`` (evaluation: one point of the grid).
* `degrade_clip(hr_frames, ...)` runs one clip through one (kernel, codec, CRF) setting, in
  memory; P/B frames appear because the clip moves.
* `degraded_pairs(sources, scale, spec, seed)` turns HR images into short pans (a crop window
  drifting a few pixels per frame, so the codec predicts across frames) and video files into
  their own consecutive frames, draws a setting per variant from `random.Random(seed, source,
  variant)` and returns SR pairs (HR crop, decoded LR). Everything is a pure function of the
  arguments and the codec libraries, so a run can be repeated and resumed; the decoded LR is
  cached under ``$ADASR_CACHE/degraded`` with a size bound (oldest entries go first).

The codecs run single-threaded (deterministic output, and one core left to the trainer).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from adasr.data.datasets import IMAGE_SUFFIXES, SRPair, cache_dir, list_images
from adasr.data.imresize import area_downscale, imresize, modcrop
from adasr.errors import ConfigError, InputError

__all__ = ["CODECS", "DEFAULT_CACHE_MB", "Degradation", "KERNELS", "Setting", "VALIDATION", "av1_crf", "degrade_clip",
           "degraded_pairs", "downscale", "kept_scheduling", "prune_cache"]

CODECS = ("h264", "h265", "av1")
KERNELS = ("area", "bicubic")
_ENCODERS = {"h264": "libx264", "h265": "libx265", "av1": "libsvtav1"}
_DECODERS = {"h264": "h264", "h265": "hevc", "av1": "libdav1d"}
DEFAULT_CACHE_MB = 4096
_VERSION = "d1"
MAX_FRAMES = 64
MAX_VARIANTS = 64


def av1_crf(crf: int) -> int:
    """SVT-AV1's CRF (0..63) for an x264-scale CRF (0..51): at the same number SVT-AV1 codes
    far finer than x264, so the band is shifted to give LR of a comparable quality (x264 CRF 28
    ~ SVT-AV1 CRF 40 on the shared clips)."""
    return int(min(63, max(1, round(crf * 1.25 + 5))))


@dataclass(frozen=True)
class Setting:
    """One point: how one clip is degraded. codec None = clean (downscale only)."""

    kernel: str
    codec: str | None
    crf: int

    @property
    def label(self) -> str:
        return f"{self.kernel}" if self.codec is None else f"{self.codec}-crf{self.crf}-{self.kernel}"


@dataclass(frozen=True)
class Degradation:
    """A distribution over `Setting`s plus the clip shape that training draws from.

    codecs: codecs drawn uniformly; crf: inclusive (lo, hi) band drawn uniformly (x264 scale; AV1
    maps through `av1_crf`); kernels: downscale kernels drawn uniformly; clean: probability of no
    codec at all; frames: frames per clip (a pan for images); variants: clips per image source;
    preset: the x264/x265 preset (SVT-AV1 uses its default preset 8).
    """

    codecs: tuple[str, ...] = ("h264", "h265")
    crf: tuple[int, int] = (18, 36)
    kernels: tuple[str, ...] = KERNELS
    clean: float = 0.0
    frames: int = 4
    variants: int = 3
    preset: str = "medium"

    def __post_init__(self) -> None:
        object.__setattr__(self, "codecs", tuple(self.codecs))
        object.__setattr__(self, "kernels", tuple(self.kernels))
        object.__setattr__(self, "crf", tuple(int(c) for c in self.crf))
        if not self.codecs and self.clean < 1:
            raise ConfigError("degradation: name at least one codec (h264, h265, av1) or use 'clean'")
        bad = [c for c in self.codecs if c not in CODECS]
        if bad:
            raise ConfigError(f"degradation: unknown codec {bad[0]!r}; known: {', '.join(CODECS)}")
        bad = [k for k in self.kernels if k not in KERNELS]
        if bad or not self.kernels:
            raise ConfigError(f"degradation: kernel must be among {', '.join(KERNELS)}")
        lo, hi = self.crf
        if not (0 <= lo <= hi <= 51):
            raise ConfigError(f"degradation: crf must be N or LO-HI within 0..51, got {lo}-{hi}")
        if not (0.0 <= self.clean <= 1.0):
            raise ConfigError(f"degradation: clean must be a fraction in [0, 1], got {self.clean}")
        if not (1 <= self.frames <= MAX_FRAMES):
            raise ConfigError(f"degradation: frames must be 1..{MAX_FRAMES}, got {self.frames}")
        if not (1 <= self.variants <= MAX_VARIANTS):
            raise ConfigError(f"degradation: variants must be 1..{MAX_VARIANTS}, got {self.variants}")
        if self.preset not in ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                               "slower", "veryslow"):
            raise ConfigError(f"degradation: unknown preset {self.preset!r}")

    @classmethod
    def parse(cls, text: str) -> Degradation:
        """``CODECS[:key=value,...]``; CODECS is ``h264``, ``h264+h265`` ... or ``clean``; keys:
        ``crf=N`` or ``LO-HI``, ``kernel=area+bicubic``, ``clean=F``, ``frames=N``,
        ``variants=N``, ``preset=NAME``."""
        if not isinstance(text, str) or not text.strip() or len(text) > 300:
            raise ConfigError("degradation: give a spec such as h264:crf=28,kernel=area")
        head, _, tail = text.strip().partition(":")
        codecs = tuple(c for c in head.split("+") if c)
        values: dict[str, object] = {}
        if codecs == ("clean",):
            codecs, values["clean"] = (), 1.0
        for item in filter(None, tail.split(",")):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not value:
                raise ConfigError(f"degradation: expected key=value, got {item!r}")
            try:
                if key == "crf":
                    lo, _, hi = value.partition("-")
                    values["crf"] = (int(lo), int(hi or lo))
                elif key == "kernel":
                    values["kernels"] = tuple(value.split("+"))
                elif key == "clean":
                    values["clean"] = float(value)
                elif key in ("frames", "variants"):
                    values[key] = int(value)
                elif key == "preset":
                    values["preset"] = value
                else:
                    raise ConfigError(f"degradation: unknown key {key!r} (crf, kernel, clean, frames, variants, "
                                      "preset)")
            except ValueError:
                raise ConfigError(f"degradation: bad value in {item!r}") from None
        return cls(codecs=codecs, **values)

    @property
    def spec(self) -> str:
        """The compact spec this value parses from (canonical order)."""
        head = "+".join(self.codecs) or "clean"
        lo, hi = self.crf
        parts = [f"crf={lo}" if lo == hi else f"crf={lo}-{hi}", f"kernel={'+'.join(self.kernels)}"]
        if self.codecs and self.clean:
            parts.append(f"clean={self.clean:g}")
        parts += [f"frames={self.frames}", f"variants={self.variants}", f"preset={self.preset}"]
        return f"{head}:{','.join(parts)}"

    def settings(self) -> list[Setting]:
        """Every point of the grid (evaluation): each kernel x codec x CRF of the band's ends."""
        lo, hi = self.crf
        crfs = sorted({lo, hi})
        out = [Setting(k, c, q) for c in self.codecs for q in crfs for k in self.kernels]
        if self.clean or not self.codecs:
            out += [Setting(k, None, 0) for k in self.kernels]
        return out

    def draw(self, rng: random.Random) -> Setting:
        """One setting of the training distribution."""
        kernel = rng.choice(self.kernels)
        if not self.codecs or rng.random() < self.clean:
            return Setting(kernel, None, 0)
        return Setting(kernel, rng.choice(self.codecs), rng.randint(*self.crf))


def downscale(hr: np.ndarray, scale: int, kernel: str) -> np.ndarray:
    """LR of a modcropped uint8 HR frame: 'area' (the mean of each scale x scale block, as the live
    server and the SRVC encoder make their LR) or 'bicubic' (MATLAB imresize, the SR protocol)."""
    if kernel == "bicubic":
        return imresize(hr, 1.0 / scale)
    if kernel != "area":
        raise ConfigError(f"unknown downscale kernel {kernel!r}; known: {', '.join(KERNELS)}")
    return area_downscale(hr, scale)


def _encoder(codec: str, width: int, height: int, crf: int, preset: str):
    import av

    if codec == "av1":
        os.environ.setdefault("SVT_LOG", "1")  # errors only; SVT-AV1 prints its configuration otherwise
    try:
        enc = av.CodecContext.create(_ENCODERS[codec], "w")
    except (av.error.FFmpegError, ValueError) as exc:  # pragma: no cover - depends on the PyAV build
        raise ConfigError(f"this PyAV build cannot encode {codec}: {exc}") from None
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, 25), Fraction(25, 1)
    enc.thread_count = 1
    if codec == "av1":
        enc.options = {"crf": str(av1_crf(crf)), "preset": "8"}
    elif codec == "h265":
        enc.options = {"crf": str(crf), "preset": preset, "x265-params": "log-level=error:pools=none:frame-threads=1"}
    else:
        from adasr.threads import x264_options

        enc.options = {"crf": str(crf), "preset": preset, **x264_options()}  # reproducible on AVX-512
    return enc


@contextlib.contextmanager
def kept_scheduling():
    """Restore the calling thread's CPU scheduling policy afterwards. SVT-AV1 switches the thread
    that drives it to real-time SCHED_FIFO when it may (as root): left so, a training or a server
    thread would starve every other program on the machine."""
    get = getattr(os, "sched_getscheduler", None)
    if get is None:  # not Linux
        yield
        return
    policy, param = get(0), os.sched_getparam(0)
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) != (policy, param.sched_priority):
            with contextlib.suppress(OSError):
                os.sched_setscheduler(0, policy, param)


def degrade_clip(hr_frames: Sequence[np.ndarray], scale: int, setting: Setting,
                 preset: str = "medium") -> np.ndarray:
    """LR frames (n, h, w, 3) uint8 of HR frames (each modcropped to an even LR size) through
    `setting`: downscale, then (unless clean) encode and decode with the real codec."""
    lr = np.stack([downscale(f, scale, setting.kernel) for f in hr_frames])
    if setting.codec is None:
        return lr
    with kept_scheduling():
        return _round_trip(lr, setting, preset)


def _round_trip(lr: np.ndarray, setting: Setting, preset: str) -> np.ndarray:
    import av

    n, h, w = lr.shape[:3]
    if h % 2 or w % 2:
        raise ConfigError(f"codec round trip needs an even LR size, got {w}x{h}")
    if setting.codec == "h265" and w < 64:
        raise ConfigError(f"H.265 needs LR frames at least 64 pixels wide, got {w}")
    enc = _encoder(setting.codec, w, h, setting.crf, preset)
    dec = av.CodecContext.create(_DECODERS[setting.codec], "r")
    dec.thread_count = 1
    packets = []
    for index, frame in enumerate(lr):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24").reformat(format="yuv420p")
        vf.pts = index
        packets += enc.encode(vf)
    packets += enc.encode(None)
    out = []
    for packet in [*packets, None]:
        for frame in dec.decode(packet):
            out.append(frame.to_ndarray(format="rgb24")[:h, :w])
    if len(out) != n:
        raise InputError(f"{setting.codec} round trip gave {len(out)} frames for {n}")
    return np.stack(out)


# -- training pairs -----------------------------------------------------------------------


def _pan(hr: np.ndarray, frames: int, scale: int, rng: random.Random) -> list[np.ndarray]:
    """`frames` crops of `hr` whose window drifts by a random velocity (up to 3 HR pixels per
    frame, so sub-pixel in LR), each cropped to an even LR size: a short clip with motion."""
    step = 3
    margin = step * (frames - 1)
    h, w = hr.shape[:2]
    unit = 2 * scale
    ch, cw = (h - margin) // unit * unit, (w - margin) // unit * unit
    if ch < 16 * scale or cw < 32 * scale:
        raise InputError("image too small for a degraded pan clip")
    vy, vx = rng.randint(-step, step), rng.randint(-step, step)
    y0, x0 = (margin if vy < 0 else 0), (margin if vx < 0 else 0)
    return [hr[y0 + t * vy:y0 + t * vy + ch, x0 + t * vx:x0 + t * vx + cw] for t in range(frames)]


def _video_clip(path: Path, frames: int, scale: int, rng: random.Random) -> list[np.ndarray]:
    from adasr.video import read_frames

    clip = []
    for frame in read_frames(path):
        clip.append(frame)
        if len(clip) >= 8 * frames:
            break
    if len(clip) < frames:
        raise InputError(f"video has fewer than {frames} frames: {path}")
    start = rng.randint(0, len(clip) - frames)
    unit = 2 * scale
    return [f[:f.shape[0] // unit * unit, :f.shape[1] // unit * unit] for f in clip[start:start + frames]]


def _sources(items: Sequence[str | os.PathLike[str]]) -> list[Path]:
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            out += list_images(path)
        elif path.is_file():
            out.append(path)
        else:
            raise InputError(f"training source not found: {path}")
    return out


def _cache_key(path: Path, scale: int, deg: Degradation, seed: int, variant: int) -> str:
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|x{scale}|{deg.spec}|{seed}|{variant}|{_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def prune_cache(folder: Path, max_bytes: int) -> int:
    """Delete the oldest entries (by modification time) until `folder` holds at most
    `max_bytes`; returns the bytes removed."""
    try:
        files = [(p.stat().st_mtime, p.stat().st_size, p) for p in folder.glob("*.npy")]
    except OSError:
        return 0
    total = sum(size for _, size, _ in files)
    removed = 0
    for _, size, path in sorted(files):
        if total <= max_bytes:
            break
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        removed += size
    return removed


def _cache_bound() -> int:
    raw = os.environ.get("ADASR_DEGRADED_CACHE_MB", str(DEFAULT_CACHE_MB))
    try:
        mb = int(raw)
    except ValueError:
        raise ConfigError(f"ADASR_DEGRADED_CACHE_MB must be a whole number of MiB, got {raw!r}") from None
    return max(0, mb) * 1024 * 1024


def degraded_pairs(sources: Sequence[str | os.PathLike[str]], scale: int, deg: Degradation, *, seed: int = 0,
                   use_cache: bool = True, progress=None) -> list[SRPair]:
    """SR pairs (HR crop, decoded LR) from image folders/files and video files through `deg`.

    Each image becomes `deg.variants` pans of `deg.frames` frames, each video `deg.variants`
    runs of consecutive frames; every variant draws its own setting. `progress(done, total)` is
    called after each variant. Pure in (sources' bytes, scale, deg, seed)."""
    from adasr.images import read_image

    paths = _sources(sources)
    folder = cache_dir() / "degraded"
    bound = _cache_bound()
    pairs: list[SRPair] = []
    total, done = len(paths) * deg.variants, 0
    for index, path in enumerate(paths):
        is_video = path.suffix.lower() not in IMAGE_SUFFIXES
        hr_full = None
        if not is_video:
            img = read_image(path)
            rgb = img.rgb if img.bit_depth == 8 else (img.rgb.astype(np.float64) / 257.0).round().astype(np.uint8)
            hr_full = modcrop(rgb, scale)
        for variant in range(deg.variants):
            rng = random.Random(f"{seed}|{index}|{variant}")
            setting = deg.draw(rng)
            clip = _pan(hr_full, deg.frames, scale, rng) if hr_full is not None else \
                _video_clip(path, deg.frames, scale, rng)
            lr = None
            file = folder / f"{_cache_key(path, scale, deg, seed, variant)}.npy"
            if use_cache and file.is_file():
                try:
                    cached = np.load(file, allow_pickle=False)
                    if cached.dtype == np.uint8 and cached.shape == (deg.frames, clip[0].shape[0] // scale,
                                                                     clip[0].shape[1] // scale, 3):
                        lr = cached
                except (OSError, ValueError):
                    lr = None  # a damaged entry is rebuilt
            if lr is None:
                lr = degrade_clip(clip, scale, setting, deg.preset)
                if use_cache and bound:
                    try:
                        folder.mkdir(parents=True, exist_ok=True)
                        tmp = file.with_suffix(f".{os.getpid()}.tmp.npy")
                        np.save(tmp, lr, allow_pickle=False)
                        os.replace(tmp, file)
                        prune_cache(folder, bound)
                    except OSError:
                        pass  # the cache is an optimisation
            for t, (hr, lo) in enumerate(zip(clip, lr, strict=True)):
                pairs.append(SRPair(f"{path.stem}-v{variant}-{setting.label}-f{t}", hr, lo))
            done += 1
            if progress is not None:
                progress(done, total)
    if not pairs:
        raise InputError("no training pairs")
    return pairs


# The validation point of a degraded training run: x264 CRF 28 (the live server's default), area.
VALIDATION = Degradation(codecs=("h264",), crf=(28, 28), kernels=("area",), frames=2, variants=1)
