"""The device profile a runtime uses, torch-free: the package's own, a cached one, or one measured now.

`resolve_family(package, key, measure)` is shared by the torch runtime (`adasr.runtime.profile`,
key from torch's thread count, measured by `profile_package`) and the ONNX runtime
(`adasr.runtime.onnx_engine`, its own key and measurement). Cached profiles live under
``$ADASR_CACHE/profiles/<package id>/<key>.json``; the package file is never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adasr._jsonfile import loads
from adasr.errors import ConfigError
from adasr.package import check_profile

if TYPE_CHECKING:
    from adasr.package import PackageInfo as Package

__all__ = ["cache_profile", "package_id", "profile_cache_path", "resolve_family"]


def package_id(package: Package) -> str:
    """A stable id of a package's weights and family (for cached profiles): 16 hex digits of the
    SHA-256 of the weights' hash recorded in its manifest and the family's JSON."""
    import hashlib

    weights = package.manifest.get("weights", {})
    digest = weights.get("tensors_sha256") or weights.get("sha256")
    if not isinstance(digest, str) or len(digest) < 16:
        raise ConfigError("the package's manifest records no weights hash")
    return hashlib.sha256((digest + package.family.to_json()).encode("utf-8")).hexdigest()[:16]


def profile_cache_path(package: Package, key: str) -> Path:
    from adasr.paths import cache_dir

    return cache_dir() / "profiles" / package_id(package) / f"{key}.json"


def cache_profile(package: Package, profile: dict[str, Any], key: str | None = None) -> Path:
    """Store `profile` (as `profile_package` returns it) in the user's cache folder for `package`
    under `key` (default: the profile's device key; the package file is never rewritten) and in
    memory on `package`; returns the cache file. OSError when the cache cannot be written."""
    import json

    from adasr._atomic import write_bytes_atomic

    path = profile_cache_path(package, key or profile["device"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, json.dumps(profile, indent=1).encode("utf-8"))
    package.profiles[profile["device"]] = profile
    return path


def resolve_family(package: Package, key: str, measure: Callable[[], dict[str, Any]] | None) -> tuple[Any, str]:
    """The family the runtime should use here, and where its latencies came from.

    Order: the package's own profile for device `key`, then a profile cached in the user's
    cache folder (``$ADASR_CACHE/profiles/<package id>/<key>.json``), then, with a `measure`
    callable, the profile it returns (measured now) cached for the next run; else the stored
    family (latencies as the search predicted them). Returns (family, source) with source
    "package", "cache", "measured" or "predicted". A damaged cache file is ignored and replaced.
    """
    from adasr.errors import AdasrError
    from adasr.safepath import read_bounded

    if key in package.profiles:
        return package.family_for(key), "package"
    path = profile_cache_path(package, key)
    if path.is_file():
        try:
            profile = check_profile(loads(read_bounded(path, 16 << 20, "cached profile"), str(path)), str(path))
            package.profiles[key] = profile  # in memory only: the package file is never rewritten
            return package.family_for(key), "cache"
        except (OSError, ValueError, AdasrError, KeyError, TypeError):
            pass
    if measure is None:
        return package.family, "predicted"
    profile = measure()
    try:
        cache_profile(package, profile, key)
    except OSError:
        package.profiles[profile["device"]] = profile  # an unwritable cache only costs a re-profile next time
    return package.family_for(profile["device"]), "measured"
