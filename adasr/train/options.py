"""A `TrainConfig` from the options of ``adasr train``: fresh (`from_options`), from a JSON run
file (`read_config_file`), or the checkpoint's own when a run resumes (`check_resume`).

The options are the CLI's, by name (``arch``, ``supernet``, ``recipe``, ``scale``, ``data``, ...);
``arg`` is a list of ``NAME=VALUE`` strings (JSON values) and ``anchors`` a list of sub-network
ids (the CLI reads them from a package or a JSON file). Every refusal is a ConfigError or an
InputError naming the option.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adasr._options import parse_assignments
from adasr.errors import ConfigError, InputError
from adasr.train.config import MAX_ANCHORS, Phase, TrainConfig

__all__ = ["check_arch", "check_resume", "from_options", "read_config_file", "space_dict"]

MAX_CONFIG_BYTES = 1 << 20


def space_dict(name: str, scale: int) -> dict[str, Any]:
    """The search space `name` (a bundled name or a space JSON file) at `scale`, as a dict."""
    from adasr.space import SearchSpace

    try:
        if name.endswith(".json") or os.sep in name:  # a user's space file, e.g. one widened for a GPU
            space = SearchSpace.from_file(name)
            if space.scale != scale:
                raise ConfigError(f"{name}: the space is x{space.scale}, but --scale is {scale}")
            return space.to_dict()
        return SearchSpace.named(name, scale=scale).to_dict()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _phases(recipe: str, steps: int) -> tuple[Phase, ...]:
    from adasr.train.sampling import recipe as make_recipe

    try:
        return make_recipe(recipe, steps)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _anchored(phases: tuple[Phase, ...], ids: Sequence[str], space: dict[str, Any]) -> tuple[Phase, ...]:
    """`--anchors`: the phases sampling from the sub-networks `ids` (each checked against `space`)."""
    from adasr.space import SearchSpace, SubnetConfig
    from adasr.train.sampling import with_anchors

    if not 1 <= len(ids) <= MAX_ANCHORS:
        raise ConfigError(f"--anchors: between 1 and {MAX_ANCHORS} sub-networks are needed, got {len(ids)}")
    space_obj = SearchSpace.from_dict(space)
    for i in ids:
        try:
            space_obj.validate(SubnetConfig.from_id(i))
        except (ValueError, ConfigError) as exc:
            raise ConfigError(f"--anchors: {exc}") from None
    return with_anchors(phases, list(ids))


def _small_until_step(fraction: float, steps: int) -> int | None:
    """--small-until as a step (None: the whole run)."""
    return None if fraction >= 1 else max(1, round(fraction * steps))


def from_options(*, arch: str = "fsrcnn", supernet: str | None = None, recipe: str = "progressive", scale: int = 2,
                 data: Sequence[str | os.PathLike[str]] | None = None, val: str | None = "Set5", steps: int = 10000,
                 batch_size: int = 16, patch: int = 48, lr: float = 1e-3, schedule: str = "cosine",
                 hfen_weight: float = 0.2, ema: float = 0.0, val_every: int = 500, ckpt_every: int = 500,
                 seed: int = 0, arg: Sequence[str] | None = None, init_from: str | os.PathLike[str] | None = None,
                 anchors: Sequence[str] | None = None, small_steps: int = 0, small_patch: int = 16,
                 small_until: float = 1.0, grad_clip: float = 0.0, degrade: str | None = None,
                 precision: str = "fp32") -> TrainConfig:
    """The `TrainConfig` that `adasr train`'s options describe (defaults: the CLI's)."""
    from adasr.paths import benchmark_dir, data_root

    sources = [str(p) for p in (data or [data_root() / "train" / "SunHays80"])]
    val_dir = None if val in (None, "none") else str(benchmark_dir(val))
    arch_args, phases = parse_assignments(arg or []), None
    if small_until < 1 and not small_steps:
        raise ConfigError("--small-until needs --small-steps")
    if supernet is not None:
        arch, arch_args, phases = "supernet", {"space": space_dict(supernet, scale)}, _phases(recipe, steps)
        if anchors is not None:
            phases = _anchored(phases, anchors, arch_args["space"])
        if small_steps:
            from adasr.train.sampling import with_small_steps

            phases = with_small_steps(phases, small_steps, small_patch, _small_until_step(small_until, steps))
    elif anchors is not None or small_steps:
        raise ConfigError(f"{'--anchors' if anchors is not None else '--small-steps'} needs --supernet")
    else:
        from adasr.nn.registry import resolve_args

        arch_args = resolve_args(arch, arch_args)  # e.g. a dlsr genotype file -> its content
    return TrainConfig(arch=arch, scale=scale, train_data=tuple(sources), arch_args=arch_args,
                       **({"phases": phases} if phases else {}),
                       val_data=val_dir, patch=patch, batch_size=batch_size, steps=steps, lr=lr,
                       schedule=schedule, hfen_weight=hfen_weight, ema=ema, val_every=val_every,
                       ckpt_every=ckpt_every, seed=seed, init_from=None if init_from is None else str(init_from),
                       grad_clip=grad_clip, degradation=degrade, precision=precision)


def read_config_file(path: str | os.PathLike[str]) -> TrainConfig:
    """A JSON run file (`TrainConfig.to_dict`'s keys); an architecture's file arguments (e.g. a
    DLSR genotype path) are read in."""
    from adasr._jsonfile import loads
    from adasr.nn.registry import resolve_args
    from adasr.safepath import read_bounded

    path = Path(path)
    data = loads(read_bounded(path, MAX_CONFIG_BYTES, "training config", InputError), f"training config {path}",
                 ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(f"training config {path} must be a JSON object")
    cfg = TrainConfig.from_dict(data)
    if cfg.arch != "supernet":
        cfg = dataclasses.replace(cfg, arch_args=resolve_args(cfg.arch, cfg.arch_args))
    return cfg


def check_resume(out_dir: str | os.PathLike[str], given: dict[str, Any]) -> TrainConfig:
    """`train --resume`: the checkpoint's settings; the options in `given` (those the user gave
    again, by name) must agree with them, else a ConfigError lists the ones that differ."""
    from adasr.data.degrade import Degradation
    from adasr.nn.registry import resolve_args
    from adasr.paths import benchmark_dir
    from adasr.train.loop import CHECKPOINT, read_checkpoint_config
    from adasr.train.sampling import small_steps_until

    out_dir = Path(out_dir)
    ckpt = out_dir / CHECKPOINT
    if not ckpt.is_file():
        raise InputError(f"nothing to resume: no {CHECKPOINT} in {out_dir}")
    stored = read_checkpoint_config(ckpt)
    space = stored.arch_args.get("space") if stored.arch == "supernet" else None

    def phases_with(phases: tuple[Phase, ...]) -> Any:
        return dataclasses.replace(stored, phases=phases).to_dict()["phases"]

    # option -> (what the option says, what the checkpoint says), in the checkpoint's terms
    views = {
        "arch": lambda v: (v, stored.arch),
        "supernet": lambda v: (space_dict(v, stored.scale), space),
        "recipe": lambda v: (phases_with(_phases(v, stored.steps)), stored.to_dict()["phases"]),
        "data": lambda v: (tuple(str(p) for p in v), stored.train_data),
        "val": lambda v: (None if v == "none" else str(benchmark_dir(v)), stored.val_data),
        "arg": lambda v: (parse_assignments(v) if stored.arch == "supernet"
                          else resolve_args(stored.arch, parse_assignments(v)), stored.arch_args),
        "init_from": lambda v: (str(v), stored.init_from),
        "degrade": lambda v: (Degradation.parse(v).spec, stored.degradation),
        "anchors": lambda v: (phases_with(_anchored(stored.phases, v, space)), stored.to_dict()["phases"]),
        "small_steps": lambda v: (v, max(p.small_steps for p in stored.phases)),
        "small_patch": lambda v: (v, max((p.small_patch for p in stored.phases if p.small_steps), default=v)),
        "small_until": lambda v: (_small_until_step(v, stored.steps), small_steps_until(stored.phases)),
    }
    conflicts = []
    for name, value in given.items():
        mine, theirs = views[name](value) if name in views else (value, getattr(stored, name))
        if mine != theirs:
            shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
            conflicts.append(f"--{name.replace('_', '-')} {shown}")
    if conflicts:
        raise ConfigError(f"--resume continues {out_dir} with the settings of its checkpoint; "
                          f"{', '.join(conflicts)} differ from them (leave them out, or train into another folder)")
    return stored


def check_arch(cfg: TrainConfig) -> None:
    """Refuse an unknown architecture or bad arguments (a ConfigError) by building the model once,
    before any run folder is made."""
    from adasr.errors import ModelError
    from adasr.nn.registry import build_model

    try:
        build_model(cfg.arch, scale=cfg.scale, **cfg.arch_args)
    except ModelError as exc:
        raise ConfigError(f"--arch/--arg: {exc}") from None
