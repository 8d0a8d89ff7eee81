"""SRVC encoder: HR video -> LR content stream + model stream of per-segment sparse deltas.

1. The HR frames are cut to a multiple of the scale k and downsampled by k with area averaging.
2. The LR frames are encoded with H.264/H.265 (CRF, preset) and decoded back exactly as a client
   decodes them: the model learns to super-resolve what the client will see.
3. The clip is cut into segments of tau seconds. The model starts from the full model record
   (as the decoder rebuilds it; with `base_by_hash` a base reference record that names the
   model by hash instead, for receivers that already hold it: only the deltas travel) and is
   adapted to each segment in order, starting from the previous segment's model, changing only
   a fraction eta of its parameters (`adasr.stream.adapt`).
4. Each segment's change is quantised, coded as a delta record, and applied through the same
   `ModelState.apply` the decoder uses, so encoder and decoder hold identical weights.
5. With `updates="rd"` a segment's change is sent only when it pays in rate-distortion terms:
   the squared error it removes from the segment's HR frames (luma) must be worth more than its
   bits would buy if spent on the content instead. The exchange rate (lambda, squared error per
   bit) is the content's own rate-distortion slope at its CRF, measured by a second encode at
   CRF + 2 (`content_lambda`). A segment whose update does not pay gets an empty record: the
   receiver keeps the model it holds. An update stays in the receiver's model after its segment,
   so its savings are counted over the next `rd_lookahead` segments too (default 2): on a static
   scene an update keeps paying long after the segment that trained it. (SRVC leaves "the model
   vs content bitrate trade-off" as future work; this is the Lagrangian rule video encoders use
   for their own choices.)

The model is the bundled generic SR model (default), SRVC's own lightweight model, any adasr
model file, or an adasr package (a supernet with a family of levels): then the loss is the mean
over the chosen levels, and the stream adapts every level at once.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adasr.errors import ConfigError, InputError
from adasr.stream.adapt import AdaptConfig, PatchSampler, SparseAdapter, segment_psnr
from adasr.stream.codec import ModelState, encode_base_ref, encode_delta, encode_full, quantise, vector_hash

__all__ = ["UPDATE_RULES", "EncodeSettings", "ModelStream", "Progress", "build_model_stream", "content_lambda",
           "downsample", "encode_content", "encode_video", "initial_model", "load_clip", "pick_device",
           "segment_bounds"]

Progress = Callable[[str, int, int], None]
UPDATE_RULES = ("always", "rd")
RD_CRF_STEP = 2  # content_lambda's second encode: CRF + this
MAX_CRF = 51  # x264 / x265
RD_SHARES = (1.0, 0.5, 0.25)  # updates="rd": the shares of a segment's update tried (largest changes first)


@dataclass(frozen=True)
class EncodeSettings:
    """Everything that shapes a stream (the CLI's options and the benchmark's sweeps)."""

    scale: int = 2
    codec: str = "h265"
    crf: int = 30
    preset: str = "slow"
    tau: float = 2.0  # segment length in seconds; inf = one segment (one-shot)
    model: str = "generic"  # generic, srvc, a model file, or a package folder / .adasr file
    levels: str = "all"  # package only: "all", level indices, dD-wW sub-networks; comma-separated
    init_steps: int = 0  # full-parameter steps on the whole clip before the full model is sent
    init_dtype: str = "float16"
    delta_dtype: str = "float16"
    base_by_hash: bool = False  # the first record names the base model by hash (the receiver holds it)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    device: str = "auto"
    updates: str = "always"  # always: every segment's update is sent; rd: only the updates that pay
    rd_lambda: float | None = None  # rd: squared error (HR luma) per bit; None = the content's slope
    rd_every: int = 5  # rd: judge an update on every N-th frame of its segment
    rd_lookahead: int = 2  # rd: also count what an update saves on the next N segments (it persists there)

    def __post_init__(self) -> None:
        if self.updates not in UPDATE_RULES:
            raise ConfigError(f"unknown update rule {self.updates!r}; choose one of {', '.join(UPDATE_RULES)}")
        if self.rd_lambda is not None and not (math.isfinite(self.rd_lambda) and self.rd_lambda >= 0):
            raise ConfigError(f"the rate-distortion lambda must be a finite number >= 0, got {self.rd_lambda}")
        if self.rd_every < 1:
            raise ConfigError(f"rd_every must be at least 1, got {self.rd_every}")
        if not 0 <= self.rd_lookahead <= 1000:
            raise ConfigError(f"rd_lookahead must be between 0 and 1000 segments, got {self.rd_lookahead}")
        if self.init_steps and self.base_by_hash:
            raise ConfigError("the base model can be named by hash only when it is sent unchanged: "
                              "leave out --init-steps (it retrains the first model) or --base-by-hash")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tau"] = None if math.isinf(self.tau) else self.tau
        d["adapt"]["betas"] = list(self.adapt.betas)
        return d


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r} (auto, cpu or cuda[:N])") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA was asked for but is not available here")
    return dev


# -- frames ---------------------------------------------------------------------------------------

def load_clip(video: str | os.PathLike[str], scale: int, max_frames: int | None = None,
              crop_hw: tuple[int, int] | None = None) -> tuple[np.ndarray, Fraction]:
    """HR frames (N, H, W, 3) uint8, centre-cropped to `crop_hw` (H, W) and to multiples of `scale`."""
    from adasr.video import probe, read_frames

    info = probe(video)
    h, w = crop_hw if crop_hw else (info.height, info.width)
    if w > info.width or h > info.height:
        raise ConfigError(f"crop {w}x{h} is larger than the video ({info.width}x{info.height})")
    w, h = w - w % scale, h - h % scale
    if w < 8 * scale or h < 8 * scale:
        raise ConfigError(f"frames of {w}x{h} are too small for x{scale}")
    y0, x0 = (info.height - h) // 2, (info.width - w) // 2
    frames = [f[y0:y0 + h, x0:x0 + w] for f in read_frames(video, max_frames=max_frames)]
    return np.ascontiguousarray(np.stack(frames)), info.fps


def downsample(hr: np.ndarray, scale: int) -> np.ndarray:
    """Area downsampling by an integer factor (the mean of each k x k block), rounded to uint8."""
    from adasr.data.imresize import area_downscale

    return np.stack([area_downscale(f, scale) for f in hr]) if len(hr) else \
        np.empty((0, hr.shape[1] // scale, hr.shape[2] // scale, hr.shape[3]), dtype=np.uint8)


def encode_content(frames: np.ndarray, fps: Fraction, codec: str, crf: int,
                   preset: str | None) -> tuple[bytes, np.ndarray]:
    """Encode frames to MP4 with `codec`; return (file bytes, frames decoded back from them)."""
    from adasr.video import VideoWriter, read_frames

    h, w = frames.shape[1:3]
    if codec in ("h265", "hevc") and w < 64:  # libx265 corrupts its heap on frames narrower than one CTU
        raise ConfigError(f"H.265 content needs LR frames at least 64 pixels wide, got {w}; crop less or use h264")
    with tempfile.TemporaryDirectory(prefix="adasr-content-") as tmp:
        path = Path(tmp) / "content.mp4"
        with VideoWriter(path, w, h, fps, codec=codec, crf=crf, preset=preset) as writer:
            for f in frames:
                writer.write(f)
        data = path.read_bytes()
        decoded = np.stack([f[:h, :w] for f in read_frames(path)])
    if decoded.shape != frames.shape:
        raise InputError(f"content stream decoded to {decoded.shape}, expected {frames.shape}")
    return data, decoded


def segment_bounds(frames: int, fps: Fraction, tau: float) -> list[tuple[int, int]]:
    """[(start, end)) frame ranges of segments of `tau` seconds (inf or 0: one segment)."""
    if math.isinf(tau) or tau <= 0:
        return [(0, frames)]
    step = max(1, int(round(tau * float(fps))))
    return [(s, min(frames, s + step)) for s in range(0, frames, step)]


# -- models ---------------------------------------------------------------------------------------

def _is_package(path: Path) -> bool:
    from adasr.package import is_package_path

    return is_package_path(path)


_SUBNET_ITEM = re.compile(r"d(\d{1,2})-w(\d{1,4})")


def package_levels(pkg: Any, text: str, path: Any = "the package") -> list:
    """The levels `text` names in package `pkg`: "all" (the family's levels on the supernet's shared
    weights), level indices, and sub-networks of the supernet as ``dD-wW`` (depth D, width W, the
    other settings as level 0's; validated against the package's search space), comma-separated.
    With a sub-network in the list the levels are ordered by cost (cheapest first), as players
    assume; otherwise as given. At most 32."""
    family = [lv.config for lv in pkg.family]
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items or len(items) > 32:
        raise ConfigError(f"--levels wants 'all', level indices and dD-wW sub-networks (1 to 32 items), got {text!r}")
    picked: list = []
    subnets = False
    for item in items:
        m = _SUBNET_ITEM.fullmatch(item)
        if item == "all":
            picked += [cfg for cfg in family if cfg.id not in pkg.own]
        elif m:
            depth, width = int(m.group(1)), int(m.group(2))
            base = family[0]
            cfg = base.replace(width=width, blocks=(base.blocks[0],) * depth)
            try:
                picked.append(pkg.space.validate(cfg))
            except ConfigError as exc:
                raise ConfigError(f"--levels item {item!r} is not a sub-network of {path}'s supernet: {exc}") from None
            subnets = True
        else:
            try:
                i = int(item)
                cfg = family[i]
            except (ValueError, IndexError):
                raise ConfigError(f"--levels wants 'all', indices below {len(family)} or dD-wW sub-networks, "
                                  f"got {item!r}") from None
            if pkg.has_own(i):
                raise ConfigError(f"level {i} of {path} has its own weights, not the supernet's: a model "
                                  f"stream updates the shared weights; pick other levels")
            picked.append(cfg)
    levels = list({cfg.id: cfg for cfg in picked}.values())
    if subnets:
        levels.sort(key=lambda cfg: pkg.supernet.cost(cfg, (64, 64))[1])
    return levels


def initial_model(settings: EncodeSettings) -> tuple[torch.nn.Module, dict[str, Any], list | None, dict[str, Any]]:
    """(model, spec, levels to adapt or None, extra manifest info) for `settings.model`."""
    from adasr.modelfile import load_model
    from adasr.nn.registry import build_model
    from adasr.paths import bundled_model

    name = settings.model
    if name == "generic":
        model, spec = load_model(bundled_model(settings.scale))
        return model, {"arch": spec.arch, "args": spec.args, "scale": spec.scale}, None, {"model": "generic"}
    if name == "srvc":
        with torch.random.fork_rng():
            torch.manual_seed(settings.adapt.seed)
            model = build_model("srvc", scale=settings.scale)
        spec = {"arch": "srvc", "args": {"scale": settings.scale}, "scale": settings.scale}
        return model, spec, None, {"model": "srvc"}
    from adasr.safepath import user_path

    path = user_path(name, "model (generic, srvc, a model file or a package)")
    if not path.exists():
        raise InputError(f"model not found: {name} (use generic, srvc, a model file or a package)")
    if _is_package(path):
        from adasr.package import load_package

        pkg = load_package(path)
        if pkg.scale != settings.scale:
            raise ConfigError(f"package {path} is x{pkg.scale}; --scale asked for x{settings.scale}")
        # The stream updates the supernet's shared weights: a level with its own weights
        # (Package.own) is not one of its levels.
        levels = package_levels(pkg, settings.levels, path)
        spec = {"arch": "supernet", "args": {"space": pkg.space.to_dict()}, "scale": pkg.scale}
        return pkg.supernet, spec, levels, {"model": "package", "levels": [c.id for c in levels]}
    model, spec = load_model(path)
    if spec.scale != settings.scale:
        raise ConfigError(f"{path} is a x{spec.scale} model; --scale asked for x{settings.scale}")
    return model, {"arch": spec.arch, "args": spec.args, "scale": spec.scale}, None, {"model": str(path)}


# -- the model stream -----------------------------------------------------------------------------

@dataclass
class ModelStream:
    init: bytes  # the first record: the full model, or with base_by_hash the base reference
    deltas: list[bytes]
    segments: list[dict[str, Any]]  # per segment: frames, changed params, bytes, losses, psnr
    state: ModelState  # the model after the last segment (== the decoder's)
    levels: list | None
    info: dict[str, Any]
    seconds: float
    cpu_seconds: float  # CPU time of this process (robust to other programs on a shared machine)
    base_ref: bytes | None = None  # the base reference record, whenever the first model is the base itself


def build_model_stream(lr: np.ndarray, hr: np.ndarray, fps: Fraction, settings: EncodeSettings,
                       evaluate_every: int = 0, on_progress: Progress | None = None,
                       base: tuple | None = None,
                       on_segment: Callable[[int, torch.nn.Module, int, int], None] | None = None) -> ModelStream:
    """Adapt the model to each segment of (decoded LR, HR) frames and code the model stream.

    `evaluate_every` N > 0 measures, after each segment's update, the PSNR the decoder gets on
    every N-th frame of that segment (per level for a package). `base` = an `initial_model`
    result to reuse. `on_segment(t, model, start, end)` is called after segment t's update with
    the model the decoder holds for frames [start, end) (benchmarks measure quality there)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    device = pick_device(settings.device)
    model, spec, levels, info = base if base is not None else initial_model(settings)
    cfg = settings.adapt
    model = model.to(device)
    base_ref = None
    if settings.init_steps:
        full = replace(cfg, strategy="full", steps=settings.init_steps, seed=cfg.seed + 7919)
        SparseAdapter(model, full, levels).adapt(PatchSampler(lr, hr, settings.scale, cfg.patch, cfg.batch, device), 0)
    else:
        base_ref = encode_base_ref(model, spec, settings.init_dtype)
    if settings.base_by_hash:
        init = base_ref
        state = ModelState.from_base(init, model, spec, device=device)  # what the decoder builds from --base
    else:
        init = encode_full(model, spec, settings.init_dtype)
        state = ModelState.from_full(init, device=device)
    adapter = SparseAdapter(state.model, cfg, levels)
    bounds = segment_bounds(len(lr), fps, settings.tau)
    gate = settings.updates == "rd" and cfg.steps > 0
    lam = settings.rd_lambda
    if gate and lam is None:
        raise ConfigError("updates='rd' needs rd_lambda (see content_lambda)")
    deltas, segments = [], []
    for t, (a, b) in enumerate(bounds):
        seg = {"index": t, "start": a, "frames": b - a}
        if evaluate_every:
            seg["psnr_before"] = _psnr(state.model, lr[a:b], hr[a:b], settings.scale, levels, evaluate_every)
        if gate:
            # An update stays in the receiver's model after its segment: on a static scene it keeps
            # paying in the segments that follow, so those are counted too (look-ahead).
            c = bounds[min(len(bounds) - 1, t + settings.rd_lookahead)][1]
            sse_before = _segment_sse(state.model, lr[a:c], hr[a:c], settings.scale, levels, settings.rd_every)
        sampler = PatchSampler(lr[a:b], hr[a:b], settings.scale, cfg.patch, cfg.batch, device)
        before = state.vector
        if cfg.steps:
            idx, losses = adapter.adapt(sampler, t)
            idx = idx.to("cpu")
            change = (adapter.vector().to("cpu") - before)[idx]
        else:
            idx, losses, change = torch.zeros(0, dtype=torch.int64), [], torch.zeros(0)
        record, idx, change, after = _delta_record(idx, change, settings.delta_dtype, t, state)
        if gate:
            # Candidates: the update, the half and the quarter of it that changed most, and nothing.
            # Each is judged by what the receiver would show with it against what it shows now; the
            # one with the lowest error + lambda * bits is sent (nothing when no update pays).
            empty = _delta_record(idx[:0], change[:0], settings.delta_dtype, t, state)[0]
            best = (0.0, empty, idx[:0], None)
            tried = []
            order = torch.argsort(change.abs(), descending=True, stable=True)
            for share in RD_SHARES:
                if share == 1.0:
                    rec, kept, vec = record, idx, after
                else:
                    keep = order[:max(1, int(round(share * idx.numel())))].sort().values if idx.numel() else order
                    rec, kept, _, vec = _delta_record(idx[keep], change[keep], settings.delta_dtype, t, state)
                if not kept.numel():
                    continue
                adapter.set_vector(vec.to(device))
                saved = sse_before - _segment_sse(state.model, lr[a:c], hr[a:c], settings.scale, levels,
                                                  settings.rd_every)
                cost = 8 * (len(rec) - len(empty))
                tried.append({"share": share, "saved_sse": saved, "cost_bits": cost})
                if saved - lam * cost > best[0]:
                    best = (saved - lam * cost, rec, kept, share)
            _, record, idx, share = best
            seg.update(rd=tried, rd_share=share, sent=share is not None, rd_frames=[a, c])
        state.apply(record, f"segment {t}")  # the encoder's model becomes the decoder's, bit for bit
        deltas.append(record)
        seg.update(changed=int(idx.numel()), bytes=len(record),
                   loss_first=losses[0] if losses else None, loss_last=losses[-1] if losses else None)
        if evaluate_every:
            seg["psnr_after"] = _psnr(state.model, lr[a:b], hr[a:b], settings.scale, levels, evaluate_every)
        segments.append(seg)
        if on_segment is not None:
            on_segment(t, state.model, a, b)
        if on_progress:
            on_progress("adapt", t + 1, len(bounds))
    info = dict(info, params=int(state.vector.numel()), device=str(device))
    return ModelStream(init, deltas, segments, state, levels, info, time.perf_counter() - started,
                       time.process_time() - cpu_started, base_ref)


@torch.inference_mode()
def _segment_sse(model, lr: np.ndarray, hr: np.ndarray, scale: int, levels, every: int) -> float:
    """Squared error (HR luma, 0-255, border = scale) of `model` over a run of frames, from every
    N-th frame scaled up to all of them; for a package, the mean over its levels."""
    from adasr.frames import to_frame, to_tensor
    from adasr.metrics import rgb_to_ycbcr_y

    device = next(model.parameters()).device
    picks = range(0, lr.shape[0], every)
    total = 0.0
    for i in picks:
        x = to_tensor(lr[i], device=device)
        yh = rgb_to_ycbcr_y(hr[i])[scale:-scale, scale:-scale]
        outs = [model(x)] if not levels else [model(x, cfg=c) for c in levels]
        for o in outs:
            ys = rgb_to_ycbcr_y(to_frame(o))[scale:-scale, scale:-scale]
            total += float(np.sum((ys - yh) ** 2)) / len(outs)
    return total * lr.shape[0] / len(picks)


def content_lambda(lr: np.ndarray, hr: np.ndarray, fps: Fraction, settings: EncodeSettings,
                   content: bytes, decoded: np.ndarray, model: torch.nn.Module, levels=None,
                   every: int = 5) -> dict[str, float]:
    """The content's rate-distortion slope at its CRF: how much HR squared error (luma, what the
    receiver shows through `model`) one more bit of content removes. A second encode at CRF +
    RD_CRF_STEP (CRF - RD_CRF_STEP at the codec's top CRF) gives the second point; lambda =
    (D(higher CRF) - D(lower CRF)) / (R(lower CRF) - R(higher CRF)), at least 0."""
    crf2 = settings.crf + RD_CRF_STEP if settings.crf + RD_CRF_STEP <= MAX_CRF else settings.crf - RD_CRF_STEP
    content2, decoded2 = encode_content(lr, fps, settings.codec, crf2, settings.preset)
    d1 = _segment_sse(model, decoded, hr, settings.scale, levels, every)
    d2 = _segment_sse(model, decoded2, hr, settings.scale, levels, every)
    r1, r2 = 8 * len(content), 8 * len(content2)
    (d_lo, r_lo), (d_hi, r_hi) = ((d1, r1), (d2, r2)) if crf2 > settings.crf else ((d2, r2), (d1, r1))
    lam = (d_hi - d_lo) / (r_lo - r_hi) if r_lo > r_hi else 0.0
    return {"lambda": max(0.0, lam), "crf": settings.crf, "crf2": crf2, "bits": r1, "bits2": r2,
            "sse": d1, "sse2": d2}


def _delta_record(idx: torch.Tensor, change: torch.Tensor, dtype: str, t: int,
                  state: ModelState) -> tuple[bytes, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(delta record for segment t, the indices it changes, their unquantised changes, the model
    vector after it): `change` at `idx` quantised to `dtype`; coordinates whose change rounds to
    zero are left out."""
    data, deq = quantise(change, dtype)
    keep = deq != 0
    if not bool(keep.all()):
        idx, change = idx[keep], change[keep]
        data, deq = quantise(change, dtype)
    after = state.vector.clone()
    after[idx] += deq
    record = encode_delta(idx, data, dtype, t, after.numel(), state.base_hash, state.hash, vector_hash(after))
    return record, idx, change, after


def _psnr(model, lr, hr, scale, levels, every):
    if not levels:
        return segment_psnr(model, lr, hr, scale, every=every)
    return [segment_psnr(model, lr, hr, scale, cfg=c, every=every) for c in levels]


# -- the whole encoder ----------------------------------------------------------------------------

def encode_video(video: str | os.PathLike[str], out: str | os.PathLike[str], settings: EncodeSettings, *,
                 max_frames: int | None = None, crop_hw: tuple[int, int] | None = None,
                 on_progress: Progress | None = None) -> dict[str, Any]:
    """Encode `video` into a stream at `out` (folder, or single file ending in .adasrs); returns the manifest."""
    from adasr._atomic import check_not_input
    from adasr.stream.container import check_stream_output, write_stream

    check_stream_output(out)  # before any work: an existing folder must be a stream adasr wrote
    model_path = Path(settings.model) if settings.model not in ("generic", "srvc") else None
    check_not_input([], [video, model_path if model_path is not None and model_path.exists() else None],
                    folders=[out])
    started = time.perf_counter()
    if on_progress:
        on_progress("read", 0, 1)
    hr, fps = load_clip(video, settings.scale, max_frames, crop_hw)
    read_s = time.perf_counter() - started
    t0, c0 = time.perf_counter(), time.process_time()
    lr = downsample(hr, settings.scale)
    if on_progress:
        on_progress("content", 0, 1)
    content, decoded = encode_content(lr, fps, settings.codec, settings.crf, settings.preset)
    content_s = time.perf_counter() - t0
    base, rd = None, None
    if settings.updates == "rd" and settings.adapt.steps:
        base = initial_model(settings)
        if settings.rd_lambda is None:
            if on_progress:
                on_progress("rate-distortion slope", 0, 1)
            model = base[0].to(pick_device(settings.device))
            rd = content_lambda(lr, hr, fps, settings, content, decoded, model, base[2], settings.rd_every)
            settings = replace(settings, rd_lambda=rd["lambda"])
    ms = build_model_stream(decoded, hr, fps, settings, on_progress=on_progress, base=base)
    encode_s, encode_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    n, h, w = hr.shape[:3]
    duration = n / float(fps)
    blobs = {"content.mp4": content, "model/init.bin": ms.init}
    segs = []
    for seg, record in zip(ms.segments, ms.deltas):
        name = f"model/seg-{seg['index']:05d}.bin"
        blobs[name] = record
        segs.append({"index": seg["index"], "start_frame": seg["start"], "frames": seg["frames"], "record": name,
                     "changed": seg["changed"], "bytes": seg["bytes"],
                     **({"sent": seg["sent"]} if "sent" in seg else {})})
    bits = {"content": 8 * len(content), "model_init": 8 * len(ms.init), "model_deltas": 8 * sum(map(len, ms.deltas))}
    bits["total"] = sum(bits.values())
    by_hash = {"base_by_hash": ms.state.base_hash.hex()} if settings.base_by_hash else {}
    manifest = {
        "source": {"path": str(video), "width": w, "height": h, "frames": n},
        "scale": settings.scale, "fps": str(fps), "frames": n, "width": w, "height": h,
        "lr_width": w // settings.scale, "lr_height": h // settings.scale, "duration_s": duration,
        "content": {"file": "content.mp4", "codec": settings.codec, "crf": settings.crf, "preset": settings.preset},
        "model": {"init": "model/init.bin", **ms.info, **by_hash}, "segments": segs, "settings": settings.to_dict(),
        **({"rate_distortion": rd} if rd is not None else {}),
        "bits": bits,
        "kbps": {k: v / duration / 1000 for k, v in bits.items()},
        "bpp": {k: v / (n * w * h) for k, v in bits.items()},
        "timing": {"read_s": read_s, "content_s": content_s, "adapt_s": ms.seconds, "encode_s": encode_s,
                   "encode_cpu_s": encode_cpu_s, "realtime_factor": duration / encode_s},
    }
    if on_progress:
        on_progress("write", 0, 1)
    write_stream(out, manifest, blobs)
    return manifest
