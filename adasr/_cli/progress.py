"""Rich progress display for training: loss, validation PSNR, speed and ETA."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["TrainProgress"]


class TrainProgress:
    def __init__(self, enabled: bool, console: Console) -> None:
        self.enabled = enabled
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("val {task.fields[val]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console, disable=not enabled, transient=False,
        )
        self.task = None
        self.loss: float | None = None
        # Output that is not a terminal (a log file, a pipe) gets no live bar: one line per
        # validation and every 5 % of the steps instead, so a long run's log shows its progress.
        self.lines = enabled and not console.is_terminal
        self.total = 0
        self.started = time.monotonic()

    def __enter__(self) -> TrainProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "start":
            self.task = self.progress.add_task("train", total=data["steps"], completed=data["step"],
                                               loss="-", val="-")
            self.total, self.started = data["steps"], time.monotonic()
            if data["step"]:
                self.console.print(f"resuming at step {data['step']} on {data['device']}")
        elif kind == "step":
            self.loss = data["loss"] if self.loss is None else 0.98 * self.loss + 0.02 * data["loss"]
            self.progress.update(self.task, completed=data["step"], loss=f"{self.loss:.4f}")
            if self.lines and data["step"] % max(1, self.total // 20) == 0:
                self._line(data["step"], "")
        elif kind == "val":
            text = " ".join(f"{v:.2f}" for k, v in data.items() if k.startswith("psnr"))
            self.progress.update(self.task, val=f"{text} dB")
            if not self.enabled:
                self.console.print(f"step {data['step']}: val PSNR {text} dB")
            elif self.lines:
                self._line(data["step"], f", val PSNR {text} dB")
        elif kind == "data" and self.enabled:
            # building degraded training clips (minutes on first use, cached afterwards)
            if "what" in data:
                self.console.print(data["what"], highlight=False)
            elif data["done"] == data["total"] or data["done"] % max(1, data["total"] // 10) == 0:
                self.console.print(f"  clips {data['done']}/{data['total']}", highlight=False)
        elif kind == "budget":
            self.console.print(f"time budget reached at step {data['step']}; saving")

    def _line(self, step: int, extra: str) -> None:
        loss = "-" if self.loss is None else f"{self.loss:.4f}"
        minutes = (time.monotonic() - self.started) / 60
        self.console.print(f"step {step}/{self.total}: loss {loss}{extra}, {minutes:.1f} min", highlight=False)
