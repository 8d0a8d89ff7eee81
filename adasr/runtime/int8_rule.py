"""Which levels of a package run in int8: the rule, and the profile entry it reads.

A device profile may carry an ``int8`` object (schema: `adasr.package.check_int8_section`),
written by ``adasr bench backends --save-profile``: per level, the float32 and int8 seconds per
frame measured side by side on this device, and the int8 output's PSNR change against HR on a
benchmark set, with the largest loss the package accepts (``tolerance_db``).

The rule (`int8_choice`): a level runs in int8 only where its entry exists, int8 was measured
faster than float32, and its PSNR loss is at most the tolerance. Without an ``int8`` entry (every
profile written before it existed) the rule picks no level. `adasr.runtime.precision` turns a
precision (fp32, int8, auto) into the levels an `Engine` quantizes; the engine reads this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from adasr.package import check_int8_section

__all__ = ["int8_choice", "int8_section", "int8_timed"]

if TYPE_CHECKING:
    from adasr.family import Family
    from adasr.package import Package


def int8_choice(family: Family, section: dict[str, Any] | None, tolerance_db: float | None = None) -> list[int]:
    """Indices of the levels of `family` that run in int8 under precision "auto": measured
    faster in int8 than in float32 and losing at most `tolerance_db` (default: the section's
    own) PSNR. None or an empty section: none."""
    if not section:
        return []
    check_int8_section(section, "int8 profile")
    tol = float(section["tolerance_db"] if tolerance_db is None else tolerance_db)
    chosen = []
    for i, level in enumerate(family):
        entry = section["levels"].get(level.config.id)
        if entry is not None and entry["int8_s"] < entry["fp32_s"] and -entry["psnr_change_db"] <= tol:
            chosen.append(i)
    return chosen


def int8_section(package: Package, device_key: str | None) -> dict[str, Any] | None:
    """The ``int8`` object of `package`'s profile for `device_key` (None: this device's key at
    the current thread count, else the package's only profile)."""
    profiles = package.profiles
    if device_key is None:
        import torch

        from adasr.timing import device_key as current

        here = current("cpu", torch.get_num_threads())
        device_key = here if here in profiles else next(iter(profiles)) if len(profiles) == 1 else None
    profile = profiles.get(device_key) if device_key is not None else None
    return None if profile is None else profile.get("int8")


def int8_timed(family: Family, section: dict[str, Any] | None, indices: Sequence[int]) -> Family:
    """`family` with the measured seconds of the levels at `indices` (those that run in int8)
    scaled by their int8 / float32 ratio from the profile's `section`, so that a policy's latency
    table and a default target FPS see the int8 speed. The ratio was measured without background
    load and is applied at every load; the predicted `latency_s` (the family's sort key) stays
    float32, so the level order, and every index into it, is unchanged. A level with no measured
    seconds gets its predicted ones scaled as its measured seconds. Levels without an entry are
    left as they are."""
    import dataclasses

    from adasr.family import Family as FamilyType

    if not section or not indices:
        return family
    check_int8_section(section, "int8 profile")
    entries, chosen = section["levels"], set(indices)
    levels = []
    for i, level in enumerate(family):
        entry = entries.get(level.config.id)
        seconds = level.measured_s or level.latency_s
        if i in chosen and entry is not None and seconds:
            ratio = entry["int8_s"] / entry["fp32_s"]
            level = dataclasses.replace(level, measured_s={k: v * ratio for k, v in seconds.items()})
        levels.append(level)
    return FamilyType(levels=tuple(levels), scale=family.scale, lr_hw=family.lr_hw, reference=family.reference,
                      search=family.search)
