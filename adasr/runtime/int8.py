"""int8 levels on PyTorch's own x86 kernels (oneDNN, AVX-512 VNNI), calibrated on real frames.

`quantize_level(subnet, frames)` turns a static sub-network of residual blocks (``r``) with a
``ps`` or ``bic`` upsampler into an `Int8Level`: every conv runs as a quantized oneDNN conv
(per-channel int8 weights, per-tensor uint8 activations, ReLU fused), the residual adds run as
quantized adds, and only the upsampler's output is dequantized; the bicubic skip stays float
(`adasr.nn.upsample.bicubic_phases`) so the image itself loses nothing. Activation ranges are
the min / max seen on the calibration frames (uint8 RGB), each widened by `margin`.
``float_up=True`` keeps the upsampler's conv in float32 (measured: +0.01 to +0.03 dB on Set5,
slower on the small levels; off by default).

Quality (docs/BENCHMARKS.md section 18): the int8 loss measured first (0.11-0.37 dB PSNR-Y on
Set5, section 16) was not 8-bit activations but oneDNN's u8 x s8 kernels on this CPU, which sum
pairs of products in 16 bits and saturate; `quantize_level` checks every quantized conv against
its exact result (on a calibration frame and a worst-case input) and gives the ones that
saturate 7-bit weights, which cannot. With that, the bundled x2 levels lose 0.01-0.04 dB.
Whether a level runs in int8 is `adasr.runtime.int8_rule`'s rule (measured faster on the device
and within the profile's tolerance); `Engine(precision="int8")` forces it.

The input needs no quantization step: a frame in [0, 1] is exactly uint8 / 255, which is the
input's quantized form (scale 1/255, zero point 0).

Measured on the 2-core reference CPU (docs/BENCHMARKS.md section 16): the oneDNN engine runs a
16- or 32-channel 3x3 conv 1.6-2x faster in int8 than in float32 (fbgemm and the x86 engine
much less), so `quantize_level` selects the ``onednn`` quantized engine.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from adasr.errors import ConfigError
from adasr.nn.upsample import bicubic_phases

__all__ = ["ENGINE", "Int8Level", "quantize_level"]

ENGINE = "onednn"
# torch 2.13 marks its quantized tensors as deprecated (the successor is torchao's PT2E flow,
# not a dependency here); the pinned build runs them, so the notice is kept off the CLI output.
warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel",
                        category=UserWarning)


def _engine() -> None:
    if ENGINE not in torch.backends.quantized.supported_engines:
        raise ConfigError(f"this torch build has no {ENGINE} quantized engine "
                          f"(has {torch.backends.quantized.supported_engines})")
    if torch.backends.quantized.engine != ENGINE:
        torch.backends.quantized.engine = ENGINE


class _Range:
    """Running min / max of one activation."""

    def __init__(self) -> None:
        self.lo, self.hi = float("inf"), float("-inf")

    def see(self, t: torch.Tensor) -> torch.Tensor:
        self.lo = min(self.lo, float(t.min()))
        self.hi = max(self.hi, float(t.max()))
        return t

    def qparams(self, margin: float) -> tuple[float, int]:
        lo, hi = min(self.lo, 0.0), max(self.hi, 0.0)
        span = (hi - lo) * (1.0 + margin) or 1e-6
        lo = lo - (hi - lo) * margin / 2 if lo < 0 else 0.0
        scale = span / 255.0
        return scale, int(min(255, max(0, round(-lo / scale))))


def _set_weight(q: nn.Module, conv: nn.Conv2d, qmax: int) -> None:
    """Per-channel symmetric int8 weights of `conv` on `q`, in [-qmax, qmax]."""
    w = conv.weight.detach().float()
    amax = w.abs().amax(dim=(1, 2, 3)).clamp_min(1e-8)
    qw = torch.quantize_per_channel(w, (amax / qmax).double(), torch.zeros(w.shape[0], dtype=torch.long), 0,
                                    torch.qint8)
    q.set_weight_bias(qw, None if conv.bias is None else conv.bias.detach().float())
    q.weight_qmax = qmax


def _qconv(conv: nn.Conv2d, scale: float, zero_point: int, relu: bool, qmax: int = 127) -> nn.Module:
    from torch.ao.nn.intrinsic.quantized import ConvReLU2d
    from torch.ao.nn.quantized import Conv2d

    cls = ConvReLU2d if relu else Conv2d
    q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None)
    _set_weight(q, conv, qmax)
    q.scale, q.zero_point = float(scale), int(zero_point)
    return q


def _exact(q: nn.Module, qx: torch.Tensor) -> torch.Tensor:
    """What the quantized conv `q` should return on `qx`: the float conv of the dequantized
    input and weights, requantized (int32 accumulation never overflows here)."""
    y = F.conv2d(qx.dequantize(), q.weight().dequantize(), q.bias(), q.stride, q.padding, q.dilation, q.groups)
    if "ReLU" in type(q).__name__:
        y = F.relu(y)
    return torch.quantize_per_tensor(y, q.scale, q.zero_point, torch.quint8)


CHECK_SIDE = 64  # side of the crop each quantized conv is checked on


def _fix_saturation(level: Int8Level, convs: dict[nn.Module, nn.Conv2d], x: torch.Tensor,
                    tolerance: int = 2, seed: int = 0) -> None:
    """Requantize to 7-bit weights every conv whose kernel output leaves its exact value.

    Measured on the reference CPU (docs/BENCHMARKS.md section 18): some of oneDNN's u8 x s8
    kernels (the 3-channel head, the 12-channel upsampler conv, some trunk convs) sum pairs of
    products in 16 bits and saturate (up to 108 LSB off: the whole int8 quality loss measured
    before), while others are exact. Each conv is checked on its input from the frame `x` and
    on a worst case (codes 0 and 255 at random), so what is found does not depend on the
    content. Weights in [-63, 63] cannot saturate (2 x 255 x 63 < 2^15): those layers lose one
    bit of weight precision and their kernels become exact."""
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.append((m, args[0]))) for m in convs]
    try:
        level.phases(x)
    finally:
        for h in hooks:
            h.remove()
    g = torch.Generator().manual_seed(seed)
    for q, qx in seen:
        # a centre crop is enough: whether a kernel saturates does not depend on the frame size,
        # and the exact reference is a float conv (the slow part of calibration on large frames)
        h, w = qx.shape[-2:]
        top, left = max(0, (h - CHECK_SIDE) // 2), max(0, (w - CHECK_SIDE) // 2)
        qx = qx[..., top:top + CHECK_SIDE, left:left + CHECK_SIDE]
        codes = (torch.randint(0, 2, qx.shape, generator=g) * 255).to(torch.uint8)
        worst = torch._make_per_tensor_quantized_tensor(codes, qx.q_scale(), qx.q_zero_point())
        for inp in (qx, worst):
            if int((q(inp).int_repr().int() - _exact(q, inp).int_repr().int()).abs().max()) > tolerance:
                _set_weight(q, convs[q], 63)
                break


def _check_supported(subnet: nn.Module) -> None:
    cfg = getattr(subnet, "config", None)
    if cfg is None or cfg.upsampler not in ("ps", "bic") or not cfg.skip \
            or any(b.variant.code != "r" for b in subnet.body):
        name = getattr(cfg, "id", type(subnet).__name__)
        raise ConfigError(f"int8 levels support residual blocks (r, skip on) with a ps or bic upsampler; "
                          f"{name} is not one")


def _float_pass(subnet: nn.Module, x: torch.Tensor, rec: list[_Range]) -> None:
    """The sub-network's float forward, recording every quantized activation's range in order."""
    it = iter(rec)
    h = next(it).see(subnet.head(x))
    y = h
    for block in subnet.body:
        a = next(it).see(F.relu(block.ops["conv_a"](y)))
        b = next(it).see(block.ops["conv_b"](a))
        y = next(it).see(b + y)
    t = next(it).see(subnet.tail(y))
    y = next(it).see(t + h)
    next(it).see(subnet.up(y))


class Int8Level(nn.Module):
    """A quantized residual level; `phases(x)` / `forward(x)` as the float sub-network's."""

    def __init__(self, subnet: nn.Module, ranges: Sequence[_Range], margin: float, float_up: bool = False) -> None:
        super().__init__()
        cfg = subnet.config
        self.config, self.scale = cfg, cfg.scale
        self.bicubic = cfg.upsampler == "bic"
        qp = [r.qparams(margin) for r in ranges]
        it = iter(qp)
        self.head = _qconv(subnet.head, *next(it), relu=False)
        self.blocks = nn.ModuleList()
        self.adds: list[tuple[float, int]] = []
        for block in subnet.body:
            a = _qconv(block.ops["conv_a"], *next(it), relu=True)
            b = _qconv(block.ops["conv_b"], *next(it), relu=False)
            self.blocks.append(nn.ModuleList([a, b]))
            self.adds.append(next(it))
        self.tail = _qconv(subnet.tail, *next(it), relu=False)
        self.tail_add = next(it)
        self.float_up = float_up
        if float_up:  # the residual image stays float: 8 bits over its range is ~1 LSB of output
            import copy

            next(it)
            self.up = copy.deepcopy(subnet.up).float().eval()
        else:
            self.up = _qconv(subnet.up, *next(it), relu=False)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        return torch.quantize_per_tensor(x, 1.0 / 255.0, 0, torch.quint8)

    def phases(self, x: torch.Tensor, qx: torch.Tensor | None = None) -> torch.Tensor:
        """(1, 3, H, W) float in [0, 1] -> (1, 3*s*s, H, W) float before the pixel shuffle."""
        add = torch.ops.quantized.add
        qx = self.quantize_input(x) if qx is None else qx
        h = self.head(qx)
        y = h
        for (conv_a, conv_b), (s, zp) in zip(self.blocks, self.adds):
            y = add(conv_b(conv_a(y)), y, s, zp)
        y = add(self.tail(y), h, *self.tail_add)
        z = self.up(y.dequantize()) if self.float_up else self.up(y).dequantize()
        return z.add_(bicubic_phases(x, self.scale)) if self.bicubic else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.phases(x), self.scale)

    def weight_bits(self) -> list[int]:
        """Weight bits of every quantized conv in forward order (8, or 7 where the kernel saturated)."""
        return [8 if m.weight_qmax == 127 else 7 for m in self.modules() if hasattr(m, "weight_qmax")]

    def int8_bytes(self) -> int:
        """Bytes of the packed int8 weights and float biases (what the level adds to memory)."""
        total = 0
        for m in self.modules():
            if hasattr(m, "_weight_bias"):
                w, b = m._weight_bias()
                total += w.numel() + (0 if b is None else b.numel() * 4)
        return total


@torch.inference_mode()
def quantize_level(subnet: nn.Module, frames: Sequence[np.ndarray], *, margin: float = 0.05,
                   float_up: bool = False) -> Int8Level:
    """Calibrate `subnet` (a static `SubNet`) on uint8 RGB frames and return its `Int8Level`."""
    _check_supported(subnet)
    if not frames:
        raise ConfigError("int8 calibration needs at least one frame")
    _engine()
    subnet = subnet.eval().float()
    n = 1 + 3 * len(subnet.body) + 3
    ranges = [_Range() for _ in range(n)]
    # frames of one size go through in one batch, channels-last (the engine's own layout)
    groups: dict[tuple[int, ...], list[np.ndarray]] = {}
    for frame in frames:
        groups.setdefault(tuple(frame.shape), []).append(frame)
    for same in groups.values():
        x = torch.from_numpy(np.ascontiguousarray(np.stack(same))).permute(0, 3, 1, 2).float().div_(255.0)
        _float_pass(subnet, x.contiguous(memory_format=torch.channels_last), ranges)
    level = Int8Level(subnet, ranges, margin, float_up).eval()
    convs = dict(zip([m for m in level.modules() if hasattr(m, "weight_qmax")],
                     [subnet.head, *[c for b in subnet.body for c in (b.ops["conv_a"], b.ops["conv_b"])],
                      subnet.tail, *([] if float_up else [subnet.up])]))
    x0 = torch.from_numpy(np.ascontiguousarray(frames[0])).permute(2, 0, 1)[None].float().div_(255.0)
    _fix_saturation(level, convs, x0)
    return level
