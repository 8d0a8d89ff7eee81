"""`adasr upscale`: images and videos in, upscaled files out; the policy lives in `adasr.upscale_run`.

One input file and an output file; or a folder and/or several inputs and an output folder, with one
progress bar and a summary table. An existing output is refused (one file) or skipped (a batch)
unless --overwrite (-y) is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from adasr.errors import AdasrError, InputError, Interrupted, OutputError
from adasr.upscale_run import DEADLINE_KEYS, Reporter, resolve_mode, upscale_file

__all__ = ["DEADLINE_KEYS", "batch_jobs", "resolve_mode", "run_upscale"]


class RichReporter(Reporter):
    """The estimate line and warnings on stderr, and a progress bar (none with --quiet)."""

    def __init__(self, console: Console, quiet: bool, progress: Progress | None = None, label: str = "upscale") -> None:
        self.console, self.quiet, self.label = console, quiet, label
        self.shared = progress is not None
        self.progress = progress
        self.task: Any = None
        self.profile_bar: Progress | None = None

    def say(self, line: str) -> None:
        if not self.quiet:
            self.console.print(line, highlight=False, soft_wrap=True)

    def warn(self, line: str) -> None:
        self.console.print(line, highlight=False, soft_wrap=True)

    def start(self, total: int | None, level: str, eta: str) -> None:
        if self.progress is None:
            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[fps]} fps, level {task.fields[level]}"),
                                     TimeElapsedColumn(), TextColumn("eta {task.fields[eta]}"), console=self.console,
                                     disable=self.quiet)
            self.progress.start()
        self.task = self.progress.add_task(self.label, total=total, fps="-", level=level, eta=eta)

    def update(self, done: int, total: int | None, fps: float, level: str, eta: str) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=done, total=total, fps=f"{fps:.1f}", level=level, eta=eta or "-")

    def finish(self, done: int) -> None:
        if self.progress is None:
            return
        if self.task is not None:
            if self.shared:
                self.progress.remove_task(self.task)
            else:
                self.progress.update(self.task, completed=done, total=done or None, eta="0 s")  # the real count
        if not self.shared:
            self.progress.stop()
            self.progress = None
        self.task = None

    def profiling(self, stage: str, done: int, total: int) -> None:
        if self.profile_bar is None:
            if not self.quiet and not self.console.is_terminal:  # no bar off a terminal: say it once
                self.console.print("profiling this device's levels (first use; cached after)", highlight=False)
            self.profile_bar = Progress(TextColumn("[bold]profiling this device (first use, cached)"), BarColumn(),
                                        MofNCompleteColumn(), console=self.console, disable=self.quiet,
                                        transient=True)
            self.profile_bar.start()
            self.profile_bar.add_task("profile", total=None)
        self.profile_bar.update(self.profile_bar.task_ids[0], completed=done, total=total)
        if total and done >= total:
            self.profile_bar.stop()


def run_upscale(inputs: list[Path], output: Path, *, quiet: bool, json_summary: bool, overwrite: bool,
                out: Console, console: Console, **options: Any) -> None:
    """One file (`inputs` is one file): refuse an existing output unless `overwrite`, run, print.
    A folder or several inputs: `batch_jobs` into the output folder, a bar, a table."""
    from adasr.video import check_not_url

    for src in inputs:
        check_not_url(src)
    if len(inputs) == 1 and not inputs[0].is_dir():
        from adasr._atomic import check_not_input

        src = inputs[0]
        check_not_input([output], [src, options.get("model")])  # writing over an input: refused first
        if output.exists() and not output.is_dir() and not overwrite:
            if not src.exists():
                raise InputError(f"input not found: {src}")
            raise OutputError(f"{output} exists; add --overwrite (or -y) to replace it")
        if output.is_dir() and src.exists():
            raise OutputError(f"{output} is a folder: give an output file, or several inputs for a folder")
        result = upscale_file(src, output, reporter=RichReporter(console, quiet), **options)
        if json_summary:
            out.print_json(json.dumps(result.summary))
        else:
            out.print(result.sentence, highlight=False, soft_wrap=True)
        return
    _run_batch(inputs, output, quiet=quiet, json_summary=json_summary, overwrite=overwrite, out=out,
               console=console, options=options)


def batch_jobs(inputs: list[Path], outdir: Path) -> list[tuple[Path, Path]]:
    """(source, target) pairs: every image and video directly in a folder input (sorted by name),
    and every file input; the target keeps the name in `outdir` (a video whose container adasr
    does not write becomes .mkv). InputError for a missing input or two inputs with one target."""
    from adasr.images import is_image_path
    from adasr.video import CONTAINERS, is_video_path

    files: list[Path] = []
    for src in inputs:
        if not src.exists():
            raise InputError(f"input not found: {src}")
        if src.is_dir():
            found = sorted(p for p in src.iterdir() if p.is_file() and (is_image_path(p) or is_video_path(p)))
            if not found:
                raise InputError(f"no images or videos in folder {src}")
            files.extend(found)
        else:
            files.append(src)
    pairs: list[tuple[Path, Path]] = []
    seen: dict[Path, Path] = {}
    for src in files:
        name = src.name
        if is_video_path(src) and src.suffix.lower() not in CONTAINERS:
            name = src.stem + ".mkv"
        dst = outdir / name
        if dst in seen:
            raise InputError(f"{seen[dst]} and {src} would both be written to {dst}; upscale them separately")
        seen[dst] = src
        pairs.append((src, dst))
    return pairs


def _run_batch(inputs: list[Path], outdir: Path, *, quiet: bool, json_summary: bool, overwrite: bool, out: Console,
               console: Console, options: dict[str, Any]) -> None:
    import time

    from adasr.estimate import format_seconds

    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"{outdir} is a file: several inputs (or a folder) need an output folder")
    pairs = batch_jobs(inputs, outdir)
    for src, _ in pairs:
        if outdir.resolve() == src.parent.resolve():
            raise OutputError(f"the output folder {outdir} is the input folder; choose another one")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {outdir}: {e.strerror or e}") from None
    rows: list[dict[str, Any]] = []
    failed: list[AdasrError] = []
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[fps]} fps, level {task.fields[level]}"), TimeElapsedColumn(),
                        TextColumn("eta {task.fields[eta]}"), console=console, disable=quiet)
    with progress:
        overall = progress.add_task(f"{len(pairs)} files", total=len(pairs), fps="-", level="-", eta="-")
        for i, (src, dst) in enumerate(pairs):
            if dst.exists() and not overwrite:
                rows.append({"input": str(src), "output": str(dst), "status": "skipped (exists)", "seconds": None})
                progress.update(overall, completed=i + 1)
                continue
            start = time.perf_counter()
            try:
                result = upscale_file(src, dst, reporter=RichReporter(console, quiet, progress, label=src.name),
                                      **options)
            except Interrupted:
                raise  # Ctrl-C stops the batch (what a resumable file kept, its message says)
            except AdasrError as exc:
                failed.append(exc)
                rows.append({"input": str(src), "output": str(dst), "status": f"failed: {exc}",
                             "seconds": time.perf_counter() - start})
            else:
                rows.append({"input": str(src), "output": str(dst), "status": "done",
                             "seconds": time.perf_counter() - start, "summary": result.summary})
            progress.update(overall, completed=i + 1)
    if json_summary:
        out.print_json(json.dumps({"files": rows, "done": sum(r["status"] == "done" for r in rows),
                                   "skipped": sum(r["status"].startswith("skipped") for r in rows),
                                   "failed": len(failed)}))
    else:
        table = Table(title=f"adasr upscale: {len(pairs)} files into {outdir}")
        for col in ("input", "output", "result", "time"):
            table.add_column(col)
        for r in rows:
            table.add_row(Path(r["input"]).name, Path(r["output"]).name, r["status"],
                          "" if r["seconds"] is None else format_seconds(r["seconds"]))
        out.print(table)
        skipped = sum(r["status"].startswith("skipped") for r in rows)
        if skipped:
            out.print(f"{skipped} skipped: their outputs exist (--overwrite replaces them)", highlight=False)
    if failed:
        first = failed[0]
        raise type(first)(f"{len(failed)} of {len(pairs)} files failed; the first: {first}")

