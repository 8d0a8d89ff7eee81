"""`adasr eval` (the usual SR table of models, packages and bicubic) and `adasr info` (what a model
file or package holds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from adasr._cli.common import out
from adasr._cli.common import set_threads as _threads

__all__ = ["eval_cmd", "info", "register"]


def eval_cmd(
    models: Annotated[Optional[list[Path]], typer.Argument(help="Model files or packages to evaluate.")] = None,
    baseline: Annotated[Optional[list[str]], typer.Option(help="Untrained reference to include: bicubic (repeatable).")] = None,
    data: Annotated[Optional[list[str]], typer.Option(help="Benchmark names or HR folders (default Set5 and Set14).")] = None,
    scale: Annotated[Optional[list[int]], typer.Option(help="Scales to evaluate (default: each model's own; 2,3,4 for bicubic).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the table as JSON here.")] = None,
    subnet: Annotated[Optional[list[str]], typer.Option(help="For a supernet file: sub-network id to evaluate (repeatable).")] = None,
    spread: Annotated[int, typer.Option(help="For a supernet file without --subnet: N sub-networks from smallest to largest.")] = 2,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
) -> None:
    """Evaluate models with the standard SR protocol (PSNR/SSIM on Y, border = scale).

    A supernet file is evaluated per sub-network, a package per level (each extracted as a static model)."""
    from adasr._atomic import check_not_input
    from adasr._cli.evaltable import run_eval

    _threads(threads)
    check_not_input([json_out], models or [])
    if not models and not baseline:
        baseline = ["bicubic"]
    run_eval(models or [], baseline or [], data or ["Set5", "Set14"], scale, json_out, out, subnet, spread)


def info(model: Annotated[Path, typer.Argument(help="Model file (.safetensors) or package (folder or .adasr).")]) -> None:
    """Show what a model file or package holds: architecture, scale, parameters, MACs, levels."""
    from adasr.modelfile import load_model

    if model.is_dir() or model.suffix == ".adasr":
        from adasr.package import load_package

        summary = load_package(model).summary()
        out.print(f"[bold]{model}[/bold] package v{summary['schema_version']}, x{summary['scale']}, "
                  f"supernet {summary['supernet_bytes'] / 1e6:.2f} MB, profiles: {', '.join(summary['profiles']) or 'none'}")
        own = set(summary["own_levels"])
        for i, lv in enumerate(summary["levels"]):
            mark = "  (own weights)" if lv["config"] in own else ""
            out.print(f"  level {i}: {lv['config']}  {lv['psnr']:.2f} dB  {lv['params']:,} params{mark}",
                      highlight=False, soft_wrap=True)
        return
    from adasr.nn.cost import count_macs, count_params

    net, spec = load_model(model)
    lr_hw = (round(720 / spec.scale), round(1280 / spec.scale))
    out.print(f"[bold]{model}[/bold]")
    out.print(f"  architecture  {spec.arch} {json.dumps(spec.args, sort_keys=True)}")
    out.print(f"  scale         x{spec.scale}")
    out.print(f"  parameters    {count_params(net):,}")
    if hasattr(net, "space"):  # a supernet: describe its space and its extreme levels
        out.print(f"  search space  {net.space.size():,} sub-networks")
        for label, cfg in (("smallest", net.space.smallest()), ("largest", net.space.largest())):
            params, macs = net.cost(cfg, lr_hw=lr_hw)
            out.print(f"  {label:<13} {cfg.id}: {params:,} params, {macs / 1e9:.2f} GMACs at 1280x720 output")
    else:
        out.print(f"  MACs          {count_macs(net, lr_hw) / 1e9:.2f} G at 1280x720 output")
    out.print(f"  schema        v{spec.schema_version}")
    for key, value in spec.info.items():
        out.print(f"  {key:<13} {json.dumps(value)}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command()(info)
