"""A Pareto picture: PSNR vs FPS of a family, with labelled reference points, as a PNG.

Uses matplotlib's object API with the Agg canvas directly (no pyplot, no global backend
switch), and writes the file atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adasr._atomic import atomic_path
from adasr.errors import ConfigError
from adasr.family import Family, load_name

__all__ = ["LabelledPoint", "plot_family"]


@dataclass(frozen=True)
class LabelledPoint:
    """An extra point on the picture (a baseline model, bicubic): FPS and PSNR."""

    label: str
    fps: float
    psnr: float
    marker: str = "s"

    @classmethod
    def coerce(cls, value: LabelledPoint | Mapping[str, Any] | Sequence[Any]) -> LabelledPoint:
        if isinstance(value, LabelledPoint):
            return value
        if isinstance(value, Mapping):
            return cls(str(value["label"]), float(value["fps"]), float(value["psnr"]), str(value.get("marker", "s")))
        label, fps, psnr = value
        return cls(str(label), float(fps), float(psnr))


def plot_family(path: str | os.PathLike[str], family: Family, points: Iterable[Any] = (), *,
                levels: Sequence[float | str] | None = None, measured: bool = True, title: str | None = None,
                dpi: int = 120) -> None:
    """Write a PNG of PSNR vs FPS: one line per load (default: every level the family
    has a latency for), measured where known (and `measured`), else predicted; plus `points`
    (`LabelledPoint`s, dicts with label/fps/psnr, or (label, fps, psnr) tuples)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    extra = [LabelledPoint.coerce(p) for p in points]
    if levels is None:
        names = sorted({n for lv in family for n in lv.latency_s}
                       | {n for lv in family for n in (lv.measured_s or {})})
    else:
        names = [load_name(v) for v in levels]
    if not names and not extra:
        raise ConfigError("nothing to plot: the family has no latencies and no points were given")
    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name in names:
        xs, ys, kinds = [], [], set()
        for lv in family:
            seconds = lv.seconds(name, measured)
            if seconds is None:
                continue
            kinds.add("measured" if measured and lv.measured_s and name in lv.measured_s else "predicted")
            xs.append(1.0 / seconds)
            ys.append(lv.psnr)
        if not xs:
            continue
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        label = f"family, load {name} ({'/'.join(sorted(kinds))})"
        ax.plot([xs[i] for i in order], [ys[i] for i in order], marker="o", label=label)
    for p in extra:
        ax.scatter([p.fps], [p.psnr], marker=p.marker, zorder=3)
        ax.annotate(p.label, (p.fps, p.psnr), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"frames per second (LR {family.lr_hw[1]}x{family.lr_hw[0]})")
    ax.set_ylabel("PSNR (dB, Y)")
    ax.set_title(title or f"x{family.scale} family: {len(family)} levels")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
