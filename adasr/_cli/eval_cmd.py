"""`adasr eval` (the usual SR table of models, packages and bicubic) and `adasr info` (what a model
file or package holds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from adasr._cli.common import console, out
from adasr._cli.common import set_threads as _threads
from adasr.errors import ConfigError

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
    degradation: Annotated[Optional[list[str]], typer.Option(help="Streaming input instead of the clean protocol: grid points of a real codec round trip (repeatable), e.g. 'h264:crf=23-33,kernel=area+bicubic' (CRFs lo, lo+5, ..., hi) or 'clean:kernel=bicubic'. Reports each level's gain over bicubic and Lanczos on the same decoded LR, SSIM and ms per frame, with the OpenCV peers.")] = None,
    clip: Annotated[Optional[list[Path]], typer.Option(help="With --degradation: a video clip to score (repeatable; default: the shared clips, none of which the bundled levels trained on).")] = None,
    frames: Annotated[int, typer.Option(help="With --degradation: frames per clip (images become pans of this many frames).")] = 12,
    max_hr: Annotated[str, typer.Option(help="With --degradation: clips are centre-cropped to at most this HR size (WxH).")] = "640x360",
    peers: Annotated[bool, typer.Option(help="With --degradation: include OpenCV's FSRCNN and ESPCN (adasr[peers]).")] = True,
    png: Annotated[Optional[Path], typer.Option(help="With --degradation: write the gain-against-CRF plot here.")] = None,
    levels: Annotated[Optional[str], typer.Option(help="With --degradation: only these levels of each package, e.g. 0,4,-1 (default: every level).")] = None,
) -> None:
    """Evaluate models with the standard SR protocol (PSNR/SSIM on Y, border = scale), or with
    --degradation on codec-compressed LR (the input a stream or a user's video carries).

    A supernet file is evaluated per sub-network, a package per level (each extracted as a static model)."""
    from adasr._atomic import check_not_input
    from adasr._cli.evaltable import run_eval

    _threads(threads)
    check_not_input([json_out, png], models or [])
    if degradation:
        from adasr._cli.streaming_eval import run_streaming_eval
        from adasr.paths import data_root

        if clip is None and data is None:
            video = data_root() / "video"
            clip = [video / n for n in ("bigbuckbunny_720p.mp4", "bikes_640x272.mp4", "megamind_720x528.avi",
                                        "vtest_768x576.avi")]
        run_streaming_eval(models or [], degradation, clip or [], data or [], scale[0] if scale else None, frames,
                           max_hr, peers, json_out, png, subnet or [], spread, out, console, levels=levels)
        return
    if clip or png or levels:
        raise ConfigError("--clip, --png and --levels go with --degradation")
    if not models and not baseline:
        baseline = ["bicubic"]
    run_eval(models or [], baseline or [], data or ["Set5", "Set14"], scale, json_out, out, subnet, spread)


def info(model: Annotated[Path, typer.Argument(help="Model file (.safetensors) or package (folder or .adasr).")]) -> None:
    """Show what a model file or package holds: architecture, scale, parameters, MACs, levels."""
    from adasr.package import is_package_path

    if is_package_path(model):
        from adasr.runtime.onnx_engine import backend

        if backend() == "onnx":  # without torch: the package read as arrays says the same
            from adasr.package import read_package_arrays as load_package
        else:
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
    from adasr.modelfile import load_model
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
