"""`adasr eval --degradation SPEC`: every level on codec-compressed LR (adasr.bench.streaming)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from adasr.errors import ConfigError

__all__ = ["run_streaming_eval"]


def _upscalers(models: list[Path], subnets: list[str], spread: int, levels: tuple[int, ...] | None = None):
    from adasr._cli.evaltable import _labels, _load, _supernet_entries
    from adasr.bench.peers import Upscaler, _torch_fn

    ups, scales = [], set()
    for path, tag in zip(models, _labels(models), strict=True):
        model, scale, is_package = _load(path)
        scales.add(scale)
        if is_package:
            from adasr.package import load_package

            family = load_package(path).family
            for i, (level, cfg) in enumerate(zip(model, family, strict=True)):
                if levels is not None and i not in levels and i - len(family) not in levels:
                    continue
                ups.append(Upscaler(f"{tag} L{i}", "adasr-level", _torch_fn(level), cfg.params))
        elif hasattr(model, "space"):
            for label, _, level in _supernet_entries(path, model, subnets, spread, tag):
                ups.append(Upscaler(label, "adasr-level", _torch_fn(level), sum(p.numel() for p in level.parameters())))
        else:
            ups.append(Upscaler(tag, "adasr-model", _torch_fn(model), sum(p.numel() for p in model.parameters())))
    if len(scales) > 1:
        raise ConfigError(f"--degradation evaluates one scale at a time; the models are x{sorted(scales)}")
    return ups, (scales.pop() if scales else None)


def run_streaming_eval(models: list[Path], grid: list[str], clips: list[Path], sets: list[str], scale: int | None,
                       frames: int, max_hr: str, peers: bool, json_out: Path | None, png_out: Path | None,
                       subnets: list[str], spread: int, out: Console, console: Console,
                       levels: str | None = None) -> dict:
    from adasr._atomic import check_writable
    from adasr._cli.common import parse_hw
    from adasr._jsonfile import write_json
    from adasr.bench.streaming import gain_png, run_streaming, summary_lines
    from adasr.paths import data_root

    for target in (json_out, png_out):
        if target is not None:
            check_writable(target)
    picked = None
    if levels is not None:
        try:
            picked = tuple(int(v) for v in levels.split(","))
        except ValueError:
            raise ConfigError(f"--levels must be level indices like 0,4,-1, got {levels!r}") from None
        if not picked or len(picked) > 64:
            raise ConfigError("--levels takes 1 to 64 level indices")
    ups, model_scale = _upscalers(models, subnets, spread, picked)
    if scale is not None and model_scale is not None and scale != model_scale:
        raise ConfigError(f"--scale {scale} does not match the models (x{model_scale})")
    scale = scale or model_scale or 2
    peers_dir = data_root() / "peers" if peers else None

    def progress(label: str, done: int, total: int) -> None:
        console.print(f"  {label}: {done}/{total}", highlight=False)

    result = run_streaming(ups, scale, grid=grid, clips=[str(c) for c in clips], sets=sets, frames=frames,
                           max_hr=parse_hw(max_hr, "--max-hr", 16), peers_dir=peers_dir, progress=progress)
    for line in summary_lines(result):
        out.print(line, highlight=False)
    for note in result["notes"]:
        console.print(f"note: {note}", highlight=False)
    if json_out is not None:
        write_json(json_out, result)
    if png_out is not None:
        gain_png(result, png_out)
    return result
