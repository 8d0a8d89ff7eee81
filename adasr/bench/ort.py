"""ONNX Runtime backends for `adasr bench backends`: a level exported at one fixed frame size.

`ort_backends(subnet, lr_hw, calib, folder)` exports the static sub-network with torch's ONNX
exporter at input size (1, 3, H, W) (a variable-size export fails at the bicubic skip's
replicate pad) and returns ``ort-fp32`` (the exported graph) and ``ort-int8`` (static QDQ
quantization by `onnxruntime.quantization`: per-channel int8 weights, uint8 activations,
calibrated on the real frames `calib`, which must be H x W). A frame of another size (a
benchmark image) runs in overlapping tiles, each padded by edge replication to H x W and
cropped, so the fp32 and int8 graphs see the same tiles and their PSNR change is comparable.

onnxruntime (and onnx, which its quantizer needs) are optional: ``pip install 'adasr[onnx]'``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["OVERLAP", "available", "ort_backends"]

Fn = Callable[[np.ndarray], np.ndarray]
OVERLAP = 8


def available() -> str | None:
    """None if ONNX Runtime and its quantizer import, else why not (one line)."""
    try:
        import onnx  # noqa: F401 - the quantizer's dependency
        import onnxruntime  # noqa: F401
        from onnxruntime import quantization  # noqa: F401
    except ImportError as exc:
        return f"ONNX Runtime not installed ({exc.name}; pip install 'adasr[onnx]')"
    return None


class _Full(nn.Module):
    def __init__(self, subnet: nn.Module) -> None:
        super().__init__()
        self.subnet = subnet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.subnet(x)


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _frame_fn(session: Any, lr_hw: tuple[int, int], scale: int) -> Fn:
    h, w = lr_hw
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:  # (1, 3, h', w') float32, h' <= h, w' <= w
        th, tw = x.shape[2:]
        if (th, tw) != (h, w):
            x = np.pad(x, ((0, 0), (0, 0), (0, h - th), (0, w - tw)), mode="edge")
        return session.run(None, {name: x})[0][:, :, :th * scale, :tw * scale]

    def fn(frame: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(frame.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)
        fh, fw = frame.shape[:2]
        if fh <= h and fw <= w:
            y = run(x)
        else:  # tiles of at most (h, w) LR pixels with their overlap
            from adasr.upscale import sr_tensor

            tile = min(h, w) - 2 * OVERLAP
            y = sr_tensor(lambda t: torch.from_numpy(run(t.numpy())), torch.from_numpy(x), scale,
                          tile=tile, overlap=OVERLAP).numpy()
        return np.ascontiguousarray((np.clip(y[0], 0, 1) * 255.0).round().astype(np.uint8).transpose(1, 2, 0))

    return fn


def ort_backends(subnet: nn.Module, lr_hw: tuple[int, int], calib: Sequence[np.ndarray], folder: Path,
                 threads: int = 1) -> dict[str, Fn]:
    """{"ort-fp32": frame -> frame, "ort-int8": frame -> frame} for the static `subnet`."""
    import logging
    import warnings

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    h, w = lr_hw
    if 2 * OVERLAP + 8 > min(h, w):
        raise ValueError(f"ONNX export size {w}x{h} is too small to tile (at least {2 * OVERLAP + 8} a side)")
    folder.mkdir(parents=True, exist_ok=True)
    fp32_path, int8_path = folder / f"{subnet.config.id}-fp32.onnx", folder / f"{subnet.config.id}-int8.onnx"
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Full(subnet.eval().float()), (torch.zeros(1, 3, h, w),), str(fp32_path),
                          input_names=["x"], output_names=["y"], opset_version=17, dynamo=False)

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": np.ascontiguousarray(f.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0}
                               for f in calib if f.shape[:2] == (h, w)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    logging.disable(logging.WARNING)  # the quantizer's advice to pre-process (shape inference) on the root logger
    try:
        quantize_static(str(fp32_path), str(int8_path), Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    scale = subnet.config.scale
    return {"ort-fp32": _frame_fn(_session(fp32_path, threads), lr_hw, scale),
            "ort-int8": _frame_fn(_session(int8_path, threads), lr_hw, scale)}


