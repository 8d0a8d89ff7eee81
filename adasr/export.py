"""Every level of a package as ONNX, with the weights held once.

Layout of an export folder (``adasr export PACKAGE --format onnx --out FOLDER``)::

    manifest.json     the sidecar (kind ``adasr-onnx-export``): scale, LR size, the input and
                      output names, the weight layout and, per level, its graph file, its
                      inputs, params, MACs, PSNR and profiled costs
    weights.bin       every weight once: float32, little endian, the tensors one after another
                      in the order the sidecar lists them (``offset`` and ``count`` in floats)
    level-K.onnx      level K's graph: input ``x`` (1, 3, H, W) RGB in [0, 1], output ``y``
                      (1, 3, sH, sW); its weights are graph *inputs* named after the tensors
                      of the layout, not initializers, so a graph file holds no weight
                      (30-50 kB of slicing and padding ops for the bundled x2)

Why weights as graph inputs: the levels of a package are slices of one supernet (Dynamic-OFA's
weight sharing), so level K reads ``head.weight[:16, :3]`` where level K+1 reads
``head.weight[:24, :3]``. Each graph takes the *whole* tensors it touches and slices them itself
(ONNX ``Slice`` and, for a smaller kernel, the learned kernel transform's ``MatMul``), so every
level is fed from the same buffers: a runtime loads ``weights.bin`` once, makes one tensor per
layout entry (views of the buffer, no copies) and switching levels loads nothing. A model
update (``adasr.stream.codec`` deltas over the supernet's flat parameter vector) changes the
buffer once and every level sees it: the buffer's first ``shared`` floats are exactly that
vector (the supernet's parameters in ``named_parameters()`` order). A level that carries its
own weights (``adasr search --add-level``) has its tensors after the shared ones, named
``own/<config id>/<name>``, read by that level's graph alone.

The graphs are exported at one fixed LR size (the bicubic skip's replicate pad does not
export with a symbolic size); export again for another size. Opset 17 (ONNX Runtime 1.14+,
onnxruntime-web, OpenVINO 2022.3+).

Speed variants (docs/EXPORT.md): ``residual=True`` graphs output ``r``, the "bic" levels'
learned branch as (1, 3*s*s, H, W) phases before the pixel shuffle, without the bicubic skip
(the runtime adds an upscale: `residual_to_image`); ``calibration=frames`` gives int8 graphs
(`quantize_level_onnx`, ONNX Runtime's static QDQ) with their weights inside (`frozen_level_onnx`).

`OnnxLevels` runs an export with ONNX Runtime (tests, `adasr bench browser`'s native rows and the
README's example use it).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from adasr.errors import ConfigError, InputError, ModelError

__all__ = ["EXPORT_KIND", "EXPORT_VERSION", "MANIFEST", "OUTPUT_IMAGE", "OUTPUT_RESIDUAL", "OnnxLevels", "WEIGHTS",
           "calibration_inputs", "export_folder_reason", "export_onnx", "frozen_level_onnx", "level_onnx",
           "quantize_level_onnx", "residual_to_image", "weight_layout"]

EXPORT_KIND = "adasr-onnx-export"
EXPORT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.bin"
OUTPUT_IMAGE = "image"  # y: (1, 3, sH, sW)
OUTPUT_RESIDUAL = "residual-phases"  # r: (1, 3*s*s, H, W) before the pixel shuffle, bicubic skip not added
OPSET = 17
MAX_SIDECAR_BYTES = 16 << 20
MAX_WEIGHT_FLOATS = 1 << 28  # 1 GiB of float32


def _residual_phases(net: nn.Module, cfg: Any, x: torch.Tensor) -> torch.Tensor:
    """The "bic" upsampler's learned branch alone: (B, 3*s*s, H, W), the sub-pixel phases before
    the pixel shuffle, without the bicubic skip (`run_network` with the "ps" upsampler on the
    same layers is exactly that)."""
    from adasr.nn.supernet import run_network

    if cfg is not None:
        r = net.routing_for(cfg)
        return run_network(r.head, r.blocks, r.tail, "ps", r.up, r.config.scale, x, phases=True)
    return run_network(net.head, net.body, net.tail, "ps", net.up, net.scale, x, phases=True)


def _check_residual(net: nn.Module, cfg: Any) -> None:
    up = (cfg if cfg is not None else net.config).upsampler
    if up != "bic":
        raise ConfigError(f"a residual-only export needs levels with the 'bic' upsampler "
                          f"(a learned branch plus bicubic), not {up!r}")


class _Level(nn.Module):
    """A copy of `net` (a SuperNet run as `cfg`, or a SubNet) as a function of x and its parameters:
    each parameter becomes a plain attribute that `forward` sets to the graph input of that name
    (torch's stateless API refuses to run under the ONNX exporter's tracer). residual: the output
    is the residual phases (`_residual_phases`), not the image."""

    def __init__(self, net: nn.Module, cfg: Any = None, residual: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.residual = residual
        self.net = copy.deepcopy(net)
        self.slots: list[tuple[nn.Module, str]] = []
        for name, _ in list(self.net.named_parameters()):
            owner_name, _, attr = name.rpartition(".")
            owner = self.net.get_submodule(owner_name) if owner_name else self.net
            del owner._parameters[attr]
            self.slots.append((owner, attr))

    def forward(self, x: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
        for (owner, attr), weight in zip(self.slots, weights):
            owner.__dict__[attr] = weight
        if self.residual:
            return _residual_phases(self.net, self.cfg, x)
        return self.net(x) if self.cfg is None else self.net(x, cfg=self.cfg)


class _Frozen(nn.Module):
    """A static sub-network with its weights as ordinary parameters (exported as initializers)."""

    def __init__(self, sub: nn.Module, residual: bool) -> None:
        super().__init__()
        self.sub, self.residual = sub, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _residual_phases(self.sub, None, x) if self.residual else self.sub(x)


def weight_layout(supernet: nn.Module, own: dict[str, nn.Module] | None = None) -> list[dict[str, Any]]:
    """[{name, offset, count, shape}] of the supernet's parameters (named_parameters order, the
    model stream's vector), then each own-weights level's tensors (``own/<id>/<name>``)."""
    out, offset = [], 0
    tensors = list(supernet.named_parameters())
    for cid, sub in sorted((own or {}).items()):
        tensors += [(f"own/{cid}/{n}", p) for n, p in sub.named_parameters()]
    for name, p in tensors:
        out.append({"name": name, "offset": offset, "count": p.numel(), "shape": list(p.shape)})
        offset += p.numel()
    return out


def level_onnx(net: nn.Module, lr_hw: tuple[int, int], cfg: Any = None, prefix: str = "",
               residual: bool = False) -> tuple[bytes, list[str]]:
    """(ONNX bytes, the weight names it takes as inputs after ``x``) of one level: the supernet
    `net` run as sub-network `cfg`, or a static `net` (cfg None) whose tensors are named with
    `prefix`. Inputs the level does not read are dropped from the graph. residual: the graph's
    output ``r`` is the learned residual's s*s phases, (1, 3*s*s, H, W), without the bicubic
    skip and before the pixel shuffle (see `residual_to_image`)."""
    import onnx

    if residual:
        _check_residual(net, cfg)
    h, w = lr_hw
    params = list(net.named_parameters())
    names = [n for n, _ in params]
    module = _Level(net, cfg, residual).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, h, w), *[p.detach() for _, p in params]), buf,
                          input_names=["x", *[prefix + n for n in names]], output_names=["r" if residual else "y"],
                          opset_version=OPSET, dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    used = {i for node in model.graph.node for i in node.input}
    keep = [i for i in model.graph.input if i.name == "x" or i.name in used]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return model.SerializeToString(), [i.name for i in keep if i.name != "x"]


def frozen_level_onnx(net: nn.Module, lr_hw: tuple[int, int], cfg: Any = None, residual: bool = False) -> bytes:
    """ONNX bytes of one level with its weights baked in as initializers (the supernet's slices
    and kernel transforms folded at export): what int8 quantization starts from. Input ``x``,
    output ``y`` (or ``r``, as `level_onnx` with residual)."""
    if residual:
        _check_residual(net, cfg)
    h, w = lr_hw
    sub = net.extract(cfg) if cfg is not None else net
    module = _Frozen(copy.deepcopy(sub).float().eval(), residual)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, h, w),), buf, input_names=["x"],
                          output_names=["r" if residual else "y"], opset_version=OPSET, dynamo=False)
    return buf.getvalue()


def calibration_inputs(frames: Sequence[np.ndarray], lr_hw: tuple[int, int]) -> list[np.ndarray]:
    """uint8 RGB frames -> (1, 3, H, W) float32 inputs at the export's LR size: the centre of a
    frame at least that large, else the frame resized to it (bicubic)."""
    h, w = lr_hw
    out = []
    for f in frames:
        if f.ndim != 3 or f.shape[2] != 3:
            raise InputError(f"calibration frames must be H x W x 3 RGB, got shape {f.shape}")
        if f.shape[0] >= h and f.shape[1] >= w:
            top, left = (f.shape[0] - h) // 2, (f.shape[1] - w) // 2
            f = f[top:top + h, left:left + w]
        else:
            from PIL import Image

            f = np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC))
        out.append(np.ascontiguousarray(f.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0))
    return out


def quantize_level_onnx(graph: bytes, inputs: Sequence[np.ndarray]) -> bytes:
    """A frozen level (`frozen_level_onnx`) quantized to int8 by ONNX Runtime's static QDQ
    quantizer: per-channel int8 weights, per-tensor uint8 activations with ranges from
    `inputs` (min / max over real frames). The network's convs, ReLUs and residual adds are
    quantized; the bicubic skip (its conv reads constant phase kernels, not a weight) and the
    add of the skip stay float32, so the image itself is not rounded to 8 bits."""
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not inputs:
        raise ConfigError("int8 quantization needs at least one calibration frame")
    model = onnx.load_from_string(graph)
    weights = {i.name for i in model.graph.initializer if i.name.startswith("sub.")}  # `_Frozen`'s parameters
    skip: set[str] = set()
    for node in model.graph.node:
        if node.op_type == "Conv" and (len(node.input) < 2 or node.input[1] not in weights):
            skip.update(node.output)  # the bicubic phases' conv (kernel computed in the graph)
    picked = [n.name for n in model.graph.node
              if (n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in weights) or n.op_type == "Relu"
              or (n.op_type == "Add" and not skip & set(n.input))]

    class _Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"x": x} for x in inputs])

        def get_next(self):
            return next(self.it, None)

    import logging

    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the quantizer's "consider pre-processing" warnings
    try:
        with tempfile.TemporaryDirectory(prefix="adasr-quant-") as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(graph)
            quantize_static(str(src), str(dst), _Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv", "Relu", "Add"], nodes_to_quantize=picked)
            return dst.read_bytes()
    finally:
        quiet.setLevel(level)


def residual_to_image(r: np.ndarray, x: np.ndarray, scale: int) -> np.ndarray:
    """A residual-only output `r` (1, 3*s*s, H, W) and its input `x` (1, 3, H, W) -> the level's
    image (1, 3, sH, sW): the residual plus the exact bicubic upscale (what the full graph
    computes), pixel-shuffled."""
    from torch.nn import functional as F

    from adasr.nn.upsample import bicubic_phases

    with torch.no_grad():
        z = torch.from_numpy(np.ascontiguousarray(r)) + bicubic_phases(torch.from_numpy(np.ascontiguousarray(x)), scale)
        return F.pixel_shuffle(z, scale).numpy()


def _weights_bytes(supernet: nn.Module, own: dict[str, nn.Module]) -> bytes:
    parts = [p.detach().reshape(-1).to("cpu", torch.float32) for p in supernet.parameters()]
    for _, sub in sorted(own.items()):
        parts += [p.detach().reshape(-1).to("cpu", torch.float32) for p in sub.parameters()]
    return torch.cat(parts).numpy().astype("<f4").tobytes()


def _profiles(package: Any) -> dict[str, Any]:
    """Per device key: {config id: {load name: median seconds}} from the package's profiles."""
    out: dict[str, Any] = {}
    for key, prof in package.profiles.items():
        per: dict[str, dict[str, float]] = {}
        for load, entry in prof.get("levels", {}).items():
            for cid, s in entry.get("measured", {}).items():
                per.setdefault(cid, {})[load] = s["median_s"]
        out[key] = {"lr_hw": prof.get("lr_hw"), "levels": per}
    return out


def export_onnx(package: Any, lr_hw: tuple[int, int], levels: Sequence[int] | None = None, *,
                residual: bool = False, calibration: Sequence[np.ndarray] | None = None) -> dict[str, bytes]:
    """{file name: bytes} of the export of `package` at LR size `lr_hw` (H, W): the sidecar,
    ``weights.bin`` and one graph per level (`levels`: indices; default all).

    residual: each graph outputs ``r``, the learned residual's phases (1, 3*s*s, H, W) without
    the bicubic skip (the runtime adds an upscale of its own; `residual_to_image`).
    calibration: uint8 RGB frames; given, the levels are int8 (`quantize_level_onnx`) with
    their weights inside the graphs (no graph inputs but ``x``; ``weights.bin`` is still
    written, for reference, but a model update does not reach these graphs)."""
    h, w = lr_hw
    if min(h, w) < 8 or max(h, w) > 4096:
        raise ConfigError(f"export LR size must be 8..4096 pixels a side, got {w}x{h}")
    fam = package.family
    picked = list(range(len(fam))) if levels is None else list(levels)
    for i in picked:
        if not 0 <= i < len(fam):
            raise ConfigError(f"level {i} does not exist (the package has levels 0..{len(fam) - 1})")
    supernet = package.supernet.eval()
    own = {cid: sub.eval() for cid, sub in package.own.items()}
    layout = weight_layout(supernet, own)
    weights = _weights_bytes(supernet, own)
    shared = sum(p.numel() for p in supernet.parameters())
    profiles = _profiles(package)
    files: dict[str, bytes] = {}
    entries = []
    int8 = calibration is not None
    xs = calibration_inputs(calibration, lr_hw) if int8 else []
    for i in picked:
        lv = fam[i]
        cid = lv.config.id
        if int8:
            net, cfg = (own[cid], None) if cid in own else (supernet, lv.config)
            graph, inputs = quantize_level_onnx(frozen_level_onnx(net, lr_hw, cfg, residual), xs), []
        elif cid in own:
            graph, inputs = level_onnx(own[cid], lr_hw, None, prefix=f"own/{cid}/", residual=residual)
        else:
            graph, inputs = level_onnx(supernet, lr_hw, lv.config, residual=residual)
        name = f"level-{i}.onnx"
        files[name] = graph
        entries.append({"index": i, "id": cid, "file": name, "inputs": inputs, "own_weights": cid in own,
                        "params": lv.params, "macs": lv.macs, "psnr": lv.psnr,
                        "latency_s": dict(lv.latency_s),
                        "measured_s": {k: v["levels"][cid] for k, v in profiles.items() if cid in v["levels"]},
                        "graph_sha256": hashlib.sha256(graph).hexdigest()})
    from adasr.package import _version

    sidecar = {"kind": EXPORT_KIND, "schema_version": EXPORT_VERSION, "adasr_version": _version(), "format": "onnx",
               "opset": OPSET, "scale": package.scale, "lr_width": w, "lr_height": h,
               "input": {"name": "x", "shape": [1, 3, h, w], "range": [0, 1], "layout": "NCHW RGB"},
               "output": ({"name": "r", "shape": [1, 3 * package.scale ** 2, h, w], "layout": OUTPUT_RESIDUAL,
                           "skip": "bicubic"} if residual else
                          {"name": "y", "shape": [1, 3, h * package.scale, w * package.scale], "range": [0, 1],
                           "layout": OUTPUT_IMAGE}),
               "precision": "int8" if int8 else "float32",
               "weights_in_graphs": int8,
               "weights": {"file": WEIGHTS, "dtype": "float32", "byte_order": "little", "count": len(weights) // 4,
                           "shared": shared, "sha256": hashlib.sha256(weights).hexdigest(), "tensors": layout},
               "levels": entries, "profile_lr_hw": list(fam.lr_hw),
               "profiles": {k: {"lr_hw": v["lr_hw"]} for k, v in profiles.items()}}
    files[WEIGHTS] = weights
    files[MANIFEST] = json.dumps(sidecar, indent=1).encode()
    return files


def export_folder_reason(folder: Path) -> str | None:
    """None if `folder` is an export adasr wrote (so it may be replaced), else why not."""
    from adasr._jsonfile import owned_folder_reason

    return owned_folder_reason(folder, "kind", EXPORT_KIND, "ONNX export",
                               lambda m: [WEIGHTS, *(lv["file"] for lv in m["levels"])])


def write_export(files: dict[str, bytes], out: Path) -> None:
    """Write an export's files into folder `out` (replaced whole, atomically; a folder adasr did
    not write is refused)."""
    from adasr._atomic import atomic_folder

    with atomic_folder(out, export_folder_reason) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)


def _read_sidecar(folder: Path) -> dict[str, Any]:
    from adasr._jsonfile import check_header
    from adasr.safepath import read_confined

    raw = read_confined(folder, MANIFEST, MAX_SIDECAR_BYTES, what="export sidecar", error=InputError)
    try:
        side = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{folder / MANIFEST}: not JSON ({exc})") from None
    check_header(side, EXPORT_KIND, EXPORT_VERSION, "ONNX export", source=folder / MANIFEST, error=InputError)
    return side


class OnnxLevels:
    """An export folder run with ONNX Runtime: the weights read once, one session per level,
    every level fed from the same arrays (`frame(level, rgb)`)."""

    def __init__(self, folder: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        from adasr.safepath import read_confined

        self.folder = Path(folder)
        self.sidecar = side = _read_sidecar(self.folder)
        wt = side["weights"]
        count = int(wt["count"])
        if not 0 < count <= MAX_WEIGHT_FLOATS:
            raise InputError(f"{self.folder}: weight count {count} out of range")
        raw = read_confined(self.folder, WEIGHTS, 4 * count, what="export weights", error=InputError)
        if len(raw) != 4 * count or hashlib.sha256(raw).hexdigest() != wt["sha256"]:
            raise ModelError(f"{self.folder / WEIGHTS}: damaged (size or SHA-256 does not match the sidecar)")
        self.buffer = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        self.tensors: dict[str, np.ndarray] = {}
        for t in wt["tensors"]:
            off, n, shape = int(t["offset"]), int(t["count"]), [int(d) for d in t["shape"]]
            if off < 0 or off + n > count or math.prod(shape) != n:
                raise ModelError(f"{self.folder}: weight {t['name']!r} does not fit the buffer")
            self.tensors[t["name"]] = self.buffer[off:off + n].reshape(shape)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        self.sessions, self.inputs = [], []
        for lv in side["levels"]:
            graph = read_confined(self.folder, lv["file"], 64 << 20, what="level graph", error=InputError)
            self.sessions.append(ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"]))
            self.inputs.append({n: self.tensors[n] for n in lv["inputs"]})
        self.scale = int(side["scale"])
        self.lr_hw = (int(side["lr_height"]), int(side["lr_width"]))
        self.residual = side.get("output", {}).get("layout") == OUTPUT_RESIDUAL

    def run(self, k: int, x: np.ndarray) -> np.ndarray:
        """Level k (position in the sidecar's list) on (1, 3, H, W) float32 in [0, 1]: the graph's
        output (the image, or for a residual-only export the residual phases)."""
        return self.sessions[k].run(None, {"x": x, **self.inputs[k]})[0]

    def image(self, k: int, x: np.ndarray) -> np.ndarray:
        """Level k's image (1, 3, sH, sW): a residual-only export's phases plus the exact bicubic."""
        y = self.run(k, x)
        return residual_to_image(y, x, self.scale) if self.residual else y

    def frame(self, k: int, rgb: np.ndarray) -> np.ndarray:
        """uint8 H x W x 3 -> uint8 sH x sW x 3 through level k (clipped, rounded)."""
        x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)
        y = self.image(k, x)[0]
        return np.ascontiguousarray((np.clip(y, 0, 1) * 255.0).round().astype(np.uint8).transpose(1, 2, 0))


# -- the ONNX runtime's graphs (adasr.runtime.onnx_engine) -------------------------------------------

RUNTIME_KIND = "adasr-runtime-graphs"
RUNTIME_VERSION = 2  # 2: the weights are external initializers (1: graph inputs)
RUNTIME_WEIGHTS = "adasr-package"  # the external data location the runtime supplies from the package
RUNTIME_MANIFEST = "manifest.json"


def _external(name: str, shape: list[int]) -> Any:
    """A float32 initializer `name` of `shape` whose data lives outside the graph, at location
    `RUNTIME_WEIGHTS`: the runtime supplies it from the package (ONNX Runtime's external
    initializers), so the graph holds no weight and yet ONNX Runtime folds and pre-packs it."""
    from onnx import TensorProto

    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape, data_location=TensorProto.EXTERNAL)
    nbytes = 4 * math.prod(shape)
    for key, value in (("location", RUNTIME_WEIGHTS), ("offset", "0"), ("length", str(nbytes))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def runtime_graph(net: nn.Module, scale: int, cfg: Any = None, prefix: str = "") -> tuple[bytes, list[dict[str, Any]]]:
    """One 'bic' level as the torch-free runtime runs it: (ONNX bytes, its weight inputs as
    [{name, shape}]). Input ``frame``: a uint8 (H, W, 3) RGB frame of any size; output ``out``:
    the uint8 (sH, sW, 3) frame, rounded and clipped as `Engine.process` does. The weights are
    initializers named as the package's tensors (``prefix`` + name for a level's own weights)
    whose data is external (`_external`): the runtime hands ONNX Runtime the package's own arrays
    for them when it opens the session, so ONNX Runtime folds the slices and kernel transforms and
    pre-packs the convolutions once (as graph inputs they ran on every call: about a third
    slower), and the graph file still holds no weight. Inside: the residual branch exported
    by torch with a symbolic size, then the bicubic skip as an edge pad and the fixed 5x5 phase
    convolution (`adasr.nn.upsample.phase_kernel`), the sub-pixel shuffle (DepthToSpace, CRD:
    torch's pixel shuffle) and the uint8 conversion."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from adasr.nn.upsample import phase_kernel

    _check_residual(net, cfg)
    params = list(net.named_parameters())
    names = [prefix + n for n, _ in params]
    module = _Level(net, cfg, residual=True).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, 24, 32), *[p.detach() for _, p in params]), buf,
                          input_names=["x", *names], output_names=["r"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"x": {2: "h", 3: "w"}, "r": {2: "h", 3: "w"}})
    model = onnx.load_from_string(buf.getvalue())
    graph = model.graph
    used = {i for node in graph.node for i in node.input}
    weights = [i for i in graph.input if i.name != "x" and i.name in used]
    shapes = {n: list(p.shape) for n, (_, p) in zip(names, params)}
    s = int(scale)
    const = [numpy_helper.from_array(np.array(255.0, dtype=np.float32), "c255"),
             numpy_helper.from_array(np.array(0.0, dtype=np.float32), "c0"),
             numpy_helper.from_array(np.array(1.0, dtype=np.float32), "c1"),
             numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
             numpy_helper.from_array(np.array([0, 0, 2, 2, 0, 0, 2, 2], dtype=np.int64), "pads2"),
             numpy_helper.from_array(phase_kernel(s).numpy().astype(np.float32), "bicubic_kernel")]
    before = [helper.make_node("Cast", ["frame"], ["frame_f"], to=TensorProto.FLOAT),
              helper.make_node("Div", ["frame_f", "c255"], ["frame_01"]),
              helper.make_node("Transpose", ["frame_01"], ["frame_chw"], perm=[2, 0, 1]),
              helper.make_node("Unsqueeze", ["frame_chw", "axis0"], ["x"])]
    after = [helper.make_node("Pad", ["x", "pads2"], ["x_pad"], mode="edge"),
             helper.make_node("Conv", ["x_pad", "bicubic_kernel"], ["bicubic"]),
             helper.make_node("Add", ["r", "bicubic"], ["z"]),
             helper.make_node("DepthToSpace", ["z"], ["y"], blocksize=s, mode="CRD"),
             helper.make_node("Squeeze", ["y", "axis0"], ["y_chw"]),
             helper.make_node("Transpose", ["y_chw"], ["y_hwc"], perm=[1, 2, 0]),
             helper.make_node("Clip", ["y_hwc", "c0", "c1"], ["y_clip"]),
             helper.make_node("Mul", ["y_clip", "c255"], ["y_255"]),
             helper.make_node("Round", ["y_255"], ["y_round"]),
             helper.make_node("Cast", ["y_round"], ["out"], to=TensorProto.UINT8)]
    nodes = [*before, *graph.node, *after]
    inputs = [helper.make_tensor_value_info("frame", TensorProto.UINT8, ["h", "w", 3]), *weights]
    outputs = [helper.make_tensor_value_info("out", TensorProto.UINT8, ["sh", "sw", 3])]
    new = helper.make_graph(nodes, "adasr_level", inputs, outputs, initializer=[*graph.initializer, *const])
    out = helper.make_model(new, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="adasr")
    out.ir_version = model.ir_version
    onnx.checker.check_model(out)  # checked with the weights as inputs (the checker looks for external files)
    del out.graph.input[1:]  # then they become external initializers
    out.graph.initializer.extend(_external(i.name, shapes[i.name]) for i in weights)
    return out.SerializeToString(), [{"name": i.name, "shape": shapes[i.name]} for i in weights]


def runtime_graphs(package: Any) -> dict[str, bytes]:
    """{file name: bytes} of the graphs the torch-free runtime runs `package` with: one
    ``level-K.onnx`` per level (`runtime_graph`) and ``manifest.json``, which names each level's
    config id, graph file, SHA-256 and weights (names and shapes of the package's tensors it reads).
    The graphs hold no trained weight, so they stay valid while the levels keep their configs."""
    supernet = package.supernet.eval()
    files: dict[str, bytes] = {}
    entries = []
    for i, lv in enumerate(package.family):
        cid = lv.config.id
        own = package.own.get(cid)
        if own is not None:
            graph, inputs = runtime_graph(own.eval(), package.scale, None, prefix=f"own/{cid}/")
        else:
            graph, inputs = runtime_graph(supernet, package.scale, lv.config)
        name = f"level-{i}.onnx"
        files[name] = graph
        entries.append({"index": i, "id": cid, "file": name, "weights": inputs,
                        "sha256": hashlib.sha256(graph).hexdigest()})
    from adasr.package import _version

    side = {"kind": RUNTIME_KIND, "schema_version": RUNTIME_VERSION, "adasr_version": _version(), "opset": OPSET,
            "scale": package.scale, "input": {"name": "frame", "dtype": "uint8", "layout": "HWC RGB"},
            "output": {"name": "out", "dtype": "uint8", "layout": "HWC RGB"},
            "weights": {"location": RUNTIME_WEIGHTS, "dtype": "float32", "from": "the package's tensors"},
            "levels": entries}
    files[RUNTIME_MANIFEST] = json.dumps(side, indent=1).encode()
    return files


def runtime_folder_reason(folder: Path) -> str | None:
    """None if `folder` holds runtime graphs adasr wrote (so it may be replaced), else why not."""
    from adasr._jsonfile import owned_folder_reason

    return owned_folder_reason(folder, "kind", RUNTIME_KIND, "runtime graphs folder",
                               lambda m: [lv["file"] for lv in m["levels"]])
