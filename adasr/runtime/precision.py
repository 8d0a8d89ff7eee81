"""An engine at a precision: which levels an `Engine` quantizes, the frames that calibrate them,
and the profile entry a bench measures.

Precision ``"fp32"`` runs every level in float32, ``"int8"`` every level the int8 path supports
(forced, measured or not), ``"auto"`` the levels `adasr.runtime.int8_rule.int8_choice` picks
from the package's profile for this device (measured faster in int8, PSNR loss within the
profile's ``tolerance_db``, default `DEFAULT_TOLERANCE_DB`); without an ``int8`` entry ``auto``
is float32 everywhere. `build_engine` builds an engine at a precision, calibrating its int8 levels on a
video's first frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adasr.errors import ConfigError
from adasr.package import check_int8_section, check_precision
from adasr.runtime.engine import Engine
from adasr.runtime.int8_rule import int8_choice, int8_section

__all__ = ["CALIBRATION_FRAMES", "CALIBRATION_HW", "DEFAULT_TOLERANCE_DB", "build_engine", "calibration_frames",
           "int8_levels", "open_engine", "section_from_bench"]

if TYPE_CHECKING:
    from adasr.family import Family
    from adasr.package import Package

DEFAULT_TOLERANCE_DB = 0.05
CALIBRATION_FRAMES = 4
CALIBRATION_HW = (180, 320)  # (H, W): at most this much of each calibration frame (its centre)


def int8_levels(package: Package, family: Family, precision: str | None = None,
                device_key: str | None = None) -> list[int] | None:
    """What `Engine(precision=...)` quantizes: None for every supported level ("int8"), else
    the indices the rule picks ("auto"; "fp32": none). precision None: the package's own."""
    precision = check_precision(package.precision if precision is None else precision)
    if precision == "int8":
        return None
    if precision == "fp32":
        return []
    return int8_choice(family, int8_section(package, device_key))


def calibration_frames(video: str | Path, count: int = CALIBRATION_FRAMES, stride: int = 10,
                       max_hw: tuple[int, int] = CALIBRATION_HW) -> list[np.ndarray]:
    """`count` uint8 RGB frames of `video` (every `stride`-th from the start) to calibrate int8,
    each centre-cropped to at most `max_hw` (H, W): the content keeps its own scale (a resized
    frame would not) and calibration costs at most that many pixels per frame and level."""
    from adasr.errors import InputError
    from adasr.video import read_frames

    frames = [f for i, f in enumerate(read_frames(video, max_frames=count * stride)) if i % stride == 0]
    if not frames:
        raise InputError(f"{video}: no frames decoded to calibrate int8")
    mh, mw = max_hw
    out = []
    for f in frames:
        top, left = max(0, (f.shape[0] - mh) // 2), max(0, (f.shape[1] - mw) // 2)
        out.append(np.ascontiguousarray(f[top:top + mh, left:left + mw]))
    return out


def section_from_bench(result: dict[str, Any], set_name: str, tolerance_db: float = DEFAULT_TOLERANCE_DB,
                       size_index: int = 0) -> dict[str, Any]:
    """The profile's ``int8`` object from an `adasr.bench.backends.run_backends` result: the
    timings at its first frame size and the PSNR change on `set_name`."""
    size = result["sizes"][size_index]
    ms = {(r["level"], r["backend"]): r["ms"] for r in size["rows"]}
    levels = {}
    for lv in result["levels"]:
        i, scores = lv["index"], lv.get(set_name) or {}
        if (i, "torch-int8") in ms and "torch-int8" in scores:
            levels[lv["id"]] = {"fp32_s": ms[(i, "torch-fp32")] / 1e3, "int8_s": ms[(i, "torch-int8")] / 1e3,
                                "psnr_change_db": scores["torch-int8"] - scores["torch-fp32"]}
    h, w = size["lr_hw"]
    section = {"tolerance_db": float(tolerance_db), "set": set_name, "lr_hw": [h, w], "threads": result["threads"],
               "clock": result["clock"], "levels": levels}
    return check_int8_section(section, "int8 profile")


def build_engine(package: Package, family: Family | None = None, *, precision: str | None = None,
                 calibration_video: str | Path | None = None, device_key: str | None = None, **kw: Any) -> Engine:
    """An `Engine` over `package` whose levels run in the precision asked for (None: the
    package's own, `Package.precision`), calibrated on the first frames of `calibration_video`
    where any level runs in int8 (a ConfigError if one is needed and none is given)."""
    family = family if family is not None else package.family_for(device_key) if device_key else package.family
    chosen = int8_levels(package, family, precision, device_key)
    if chosen == []:
        return Engine(package, family, **kw)
    if calibration_video is None:
        raise ConfigError("int8 levels need calibration frames: give a video to calibrate on")
    return Engine(package, family, precision="int8", int8_only=chosen, device_key=device_key,
                  calibration=calibration_frames(calibration_video), **kw)


def open_engine(package: Any = None, scale: int = 2, *, profile: bool = True, on_progress: Any = None,
                precision: str | None = None, calibration_video: Any = None, family: str = "codec") -> Any:
    """An `Engine` over the package at `package` (None: the bundled one of `family` for `scale`, through the one
    loader `adasr.package.open_package`) with its family's latencies for this device
    (`adasr.runtime.profile.resolve_family`), carrying `profile_source` and `package`. What
    `adasr.load_engine` returns (see there)."""
    from adasr.package import open_package
    from adasr.runtime.profile import resolve_family

    if precision is not None:
        check_precision(precision)
    pkg = open_package(package, scale, family)
    levels, source = resolve_family(pkg, profile_if_missing=profile, on_progress=on_progress)
    engine = build_engine(pkg, levels, precision=precision, calibration_video=calibration_video)
    engine.profile_source = source
    engine.package = pkg
    return engine
