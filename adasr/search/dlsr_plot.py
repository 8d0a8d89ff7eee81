"""The alpha and beta trajectories of a DLSR search as one PNG (matplotlib object API, Agg).

One panel per mixed layer (softmax(alpha) of every operation over the steps, one row per cell)
and, with the network-level search, one panel per cell j >= 2 (softmax(beta) over its inputs
x0 .. x_{j-1}). Written atomically.
"""

from __future__ import annotations

import os
from typing import Any

from adasr._atomic import atomic_path
from adasr.nn.dlsr import OP_TITLES

__all__ = ["plot_trajectory"]


def plot_trajectory(path: str | os.PathLike[str], trajectory: dict[str, Any], *, dpi: int = 100) -> None:
    """`trajectory`: a run's trajectory.json (`adasr.search.dlsr_search.read_trajectory`); a dotted line
    marks the end of the warm-up."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = trajectory["records"]
    warmup_steps = trajectory.get("warmup_steps")
    ops = trajectory["ops"]
    steps = [r["step"] for r in records]
    cells = len(records[0]["alpha"])
    layers = len(records[0]["alpha"][0])
    n_beta = len(records[0]["beta"])
    beta_rows = (n_beta + layers - 1) // layers
    rows = cells + beta_rows
    fig = Figure(figsize=(4.0 * layers, 2.2 * rows + 0.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, layers, squeeze=False, sharex=True)
    colours = [f"C{i}" for i in range(len(ops))]
    for c in range(cells):
        for k in range(layers):
            ax = axes[c][k]
            for o, name in enumerate(ops):
                ax.plot(steps, [r["alpha"][c][k][o] for r in records], color=colours[o],
                        label=OP_TITLES.get(name, name), linewidth=1.2)
            ax.set_title(f"cell {c + 1}, mixed layer {k + 1}: softmax(alpha)", fontsize=8)
            ax.tick_params(labelsize=7)
    for b in range(beta_rows * layers):
        ax = axes[cells + b // layers][b % layers]
        if b >= n_beta:
            ax.set_visible(False)
            continue
        j = b + 2
        for i in range(j):
            ax.plot(steps, [r["beta"][b][i] for r in records], label=f"from x{i}", linewidth=1.2)
        ax.set_title(f"cell {j} inputs: softmax(beta)", fontsize=8)
        ax.legend(fontsize=6, loc="upper left")
        ax.tick_params(labelsize=7)
    if warmup_steps:
        for row in axes:
            for ax in row:
                if ax.get_visible():
                    ax.axvline(warmup_steps, color="grey", linestyle=":", linewidth=0.8)
    for ax in axes[-1]:
        ax.set_xlabel("step", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(ops), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (2.2 * rows + 0.6)))
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
