"""`adasr eval`: the usual SR table (dataset x scale, PSNR/SSIM, params, MACs at 720p output)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from adasr._atomic import write_bytes_atomic
from adasr.errors import ConfigError

__all__ = ["run_eval"]


def _supernet_entries(path: Path, model, subnets: list[str], spread: int, tag: str | None = None) -> list[tuple]:
    """One entry per sub-network of a supernet file: (label, scale, the level as a static model); `tag`
    names the file (default `_label`)."""
    from adasr.nn.supernet import spread_configs
    from adasr.space import SubnetConfig

    space = model.space
    cfgs = [space.validate(SubnetConfig.from_id(i)) for i in subnets] if subnets else spread_configs(space, spread)
    entries = []
    for cfg in cfgs:
        level = model.extract(cfg).eval()
        entries.append((f"{tag or _label(path)}:{cfg.id}", space.scale, level))
    return entries


def _load(path: Path):
    """(model, scale, False) for a model file; (its levels as static models, scale, True) for a package."""
    from adasr.modelfile import load_model
    from adasr.package import is_package_path

    if is_package_path(path):
        from adasr.package import load_package

        package = load_package(path)
        return [package.level_model(lv) for lv in package.family], package.scale, True
    model, spec = load_model(path)
    return model, spec.scale, False


def _label(path: Path) -> str:
    """A row label: the file's stem, or its run folder's name for a run's `model.safetensors`."""
    return path.parent.name if path.stem == "model" and path.parent.name else path.stem


def _labels(paths: list[Path]) -> list[str]:
    """One distinct row label per model: `_label`, with as many parent folders as it takes where two
    models would share it (runs/a/own/model.safetensors and runs/b/own/model.safetensors: a/own and
    b/own), and a count where the same file is given twice."""
    def name(path: Path, depth: int) -> str:  # `_label` under up to `depth` of the folders above it
        at = path.parent.parent if path.stem == "model" and path.parent.name else path.parent
        above = [f.name for f in [at, *at.parents][:depth] if f.name]
        return "/".join([*reversed(above), _label(path)])

    labels = [_label(p) for p in paths]
    for depth in range(1, 4):
        files: dict[str, set[Path]] = {}
        for p, lb in zip(paths, labels):
            files.setdefault(lb, set()).add(p.resolve())
        clash = {lb for lb, fs in files.items() if len(fs) > 1}  # shared by different files
        if not clash:
            break
        labels = [name(p, depth) if lb in clash else lb for p, lb in zip(paths, labels)]
    seen: dict[str, int] = {}
    out = []
    for lb in labels:
        seen[lb] = seen.get(lb, 0) + 1
        out.append(lb if seen[lb] == 1 else f"{lb} #{seen[lb]}")
    return out


def run_eval(models: list[Path], baselines: list[str], datasets: list[str], scales: list[int] | None,
             json_out: Path | None, console: Console, subnets: list[str] | None = None,
             spread: int = 2) -> list[dict]:
    from adasr.data.datasets import load_image_pairs
    from adasr.evaluation import evaluate
    from adasr.nn.cost import count_macs, count_params
    from adasr.nn.registry import build_model
    from adasr.paths import benchmark_dir

    if json_out is not None:
        from adasr._atomic import check_writable

        check_writable(json_out)
    entries = []  # (label, scale, model)
    for name in baselines:
        if name != "bicubic":
            raise ConfigError(f"--baseline knows only 'bicubic' (trained baselines are model files), got {name!r}")
        for s in scales or [2, 3, 4]:
            entries.append((name, s, build_model("bicubic", scale=s)))
    loaded = [(path, *_load(path)) for path in models]
    tags = _labels(models)
    if subnets and not any(hasattr(model, "space") and not is_package for _, model, _, is_package in loaded):
        raise ConfigError("--subnet picks sub-networks of a supernet file; none of the models given is one "
                          "(a package is evaluated level by level)")
    for n, (path, model, scale, is_package) in enumerate(loaded):
        if scales and scale not in scales:
            continue
        if is_package:
            entries += [(f"{tags[n]}:L{i}", scale, level) for i, level in enumerate(model)]
        elif hasattr(model, "space"):
            entries += _supernet_entries(path, model, subnets or [], spread, tags[n])
        else:
            entries.append((tags[n], scale, model))
    if not entries:
        raise ConfigError(f"no model supports the requested scale(s) {scales}")
    folders = {name: benchmark_dir(name) for name in datasets}
    rows, cache = [], {}
    for label, s, model in entries:
        lr_hw = (round(720 / s), round(1280 / s))
        params, macs = count_params(model), count_macs(model, lr_hw)
        for name, folder in folders.items():
            if (name, s) not in cache:
                cache[(name, s)] = load_image_pairs(folder, s)
            result = evaluate(model, cache[(name, s)], s)
            rows.append({"model": label, "dataset": Path(name).name, "scale": s, "psnr": round(result.psnr, 4),
                         "ssim": round(result.ssim, 5), "images": result.images, "params": params, "macs_720p": macs})
    table = Table(title="SR evaluation (PSNR/SSIM on Y, border = scale; MACs at 1280x720 output)")
    for col in ("model", "dataset", "scale", "PSNR", "SSIM", "params", "GMACs"):
        table.add_column(col, justify="left" if col in ("model", "dataset") else "right")
    for r in rows:
        table.add_row(r["model"], r["dataset"], f"x{r['scale']}", f"{r['psnr']:.2f}", f"{r['ssim']:.4f}",
                      f"{r['params']:,}", f"{r['macs_720p'] / 1e9:.2f}")
    console.print(table, width=140)
    if json_out is not None:
        write_bytes_atomic(json_out, (json.dumps(rows, indent=2) + "\n").encode())
    return rows
