"""The deployable model package: one supernet, its family of levels, and device profiles.

Folder layout (``save_package("model.adasrpkg", ...)``, any path not ending in ``.adasr``)::

    manifest.json              {"format": "adasr-package", "schema_version": 1, "adasr_version",
                                "scale", "space": SearchSpace dict, "created", "info": {...},
                                "weights": {"file": "supernet.safetensors", "sha256": <of the file>},
                                "levels": {"file": "levels.json"}, "precision": "fp32" | "int8" | "auto"}
                               (precision: optional, "fp32" when absent; `Package.precision`)
    supernet.safetensors       the supernet's state dict (safetensors; no pickle anywhere)
    levels.json                the `Family` (levels ordered by cost; `Family.to_dict`)
                               ("own_levels": optional manifest list of config ids: levels that
                               carry their own weights, below)
    profiles/<device-key>.json one per device (`adasr.runtime.profile.profile_package`; schema: `check_profile`):
                               measured per-level latency per load + latency table

Single-file variant (a path ending in ``.adasr``; zip-free): one safetensors file holding the
same tensors, with the manifest, the levels and each profile as JSON strings in its header
(keys ``adasr.manifest``, ``adasr.levels``, ``adasr.profile.<device-key>``). The manifest then
records ``weights.tensors_sha256``: a digest of the tensors (names, dtypes, shapes, bytes),
since a file cannot contain its own checksum.

A level may carry its own weights (a sub-network trained alone, `adasr train --arch subnet`,
added with `adasr search --add-level`): its `SubNet` tensors are stored beside the supernet's in
the same safetensors file, named ``own/<config id>/<tensor name>``, and the manifest lists such
levels under ``own_levels``. `Package.level_model` and the runtime use those weights for that
level; every other level is the supernet's sub-network (shared weights).

Loading never unpickles and refuses a damaged package (weights checksum mismatch, a missing
file, bad JSON, levels outside the supernet's space) or a foreign one (no manifest, another
format, an unknown schema version) with a one-line `ModelError` naming the problem. A new
folder is written beside its destination and renamed into place, so a crash never leaves half
a package under the final name.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from safetensors import SafetensorError, safe_open

from adasr._atomic import (
    atomic_folder,
    atomic_path,
    check_replaceable,
    check_writable,
    write_bytes_atomic,
)
from adasr._digest import tensors_sha256
from adasr._jsonfile import MAX_MANIFEST_BYTES, check_header, loads, owned_folder_reason
from adasr.errors import ConfigError, ModelError, OutputError
from adasr.family import Family, Level
from adasr.safepath import confined_file, read_confined
from adasr.space import SearchSpace

if TYPE_CHECKING:  # torch loads only where a package is built, saved or run in torch (adasr.runtime.onnx_engine
    import torch  # reads packages without it)

    from adasr.nn.supernet import SubNet, SuperNet

__all__ = ["LEVELS", "MANIFEST", "MAX_JSON_BYTES", "MAX_PROFILES", "MAX_WEIGHTS_BYTES", "PACKAGE_FORMAT",
           "PACKAGE_SCHEMA_VERSION", "PROFILES", "PROFILE_KIND", "PROFILE_SCHEMA_VERSION", "Package",
           "PackageArrays", "PackageInfo", "SINGLE_FILE_SUFFIX", "WEIGHTS", "check_int8_section",
           "check_package_output", "check_precision", "check_profile", "is_package_path", "load_package",
           "open_package", "package_folder_reason", "read_package_arrays", "save_package"]

PACKAGE_FORMAT = "adasr-package"
PACKAGE_SCHEMA_VERSION = 1
PROFILE_SCHEMA_VERSION = 1
PROFILE_KIND = "adasr-device-profile"
SINGLE_FILE_SUFFIX = ".adasr"
MANIFEST = "manifest.json"
WEIGHTS = "supernet.safetensors"
LEVELS = "levels.json"
PROFILES = "profiles"
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_META_MANIFEST, _META_LEVELS, _META_PROFILE = "adasr.manifest", "adasr.levels", "adasr.profile."
MAX_WEIGHTS_BYTES = 1 << 30  # the supernet file (MAX_VALUES float32 values fit well below)
MAX_JSON_BYTES = 16 << 20  # levels.json, one profile
MAX_PROFILES = 256
MAX_OWN_LEVELS = 64  # levels of a package that carry their own weights
OWN_PREFIX = "own/"  # tensor-name prefix of a level's own weights: own/<config id>/<tensor name>


def _version() -> str:
    import adasr

    return adasr.__version__


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_tensors_sha256 = tensors_sha256  # the same digest guards training checkpoints (torch-free: adasr._digest)


def _json(data: Any) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def _check_key(device_key: str) -> str:
    if not isinstance(device_key, str) or not _KEY_RE.match(device_key):
        raise ConfigError(f"device key must be 1-128 characters of letters, digits, '.', '_' or '-', "
                          f"got {device_key!r}")
    return device_key


def check_profile(profile: Any, source: str) -> dict[str, Any]:
    """Validate the structure of a device profile dict (as `adasr.runtime.profile.profile_package`
    returns and ``profiles/<device-key>.json`` holds); ConfigError if bad."""
    from adasr.measures import LatencySample

    check_header(profile, PROFILE_KIND, PROFILE_SCHEMA_VERSION, "device profile", source=source, error=ConfigError)
    levels = profile.get("levels")
    if not isinstance(levels, dict):
        raise ConfigError(f"{source}: profile has no 'levels' object")
    for name, entry in levels.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("measured"), dict):
            raise ConfigError(f"{source}: profile level {name!r} has no 'measured' object")
        for sample in entry["measured"].values():
            LatencySample.from_dict(sample)
    if profile.get("int8") is not None:
        check_int8_section(profile["int8"], source)
    table = profile.get("latency_table")
    if table is not None:
        from adasr.measures import TableData

        TableData.from_dict(table)
    return profile


PRECISIONS = ("fp32", "int8", "auto")
MAX_INT8_LEVELS = 1000


def check_precision(precision: Any) -> str:
    """`precision` if it is one of `PRECISIONS` (fp32, int8, auto); ConfigError otherwise."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def _finite(value: Any, lo: float, hi: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= float(value) <= hi


def check_int8_section(section: Any, source: str) -> dict[str, Any]:
    """Validate a profile's optional ``int8`` object (read by `adasr.runtime.int8_rule`)::

        {"tolerance_db": <largest PSNR loss, dB, at which a level may run in int8>,
         "set": <where the PSNR change was measured>, "levels": {<config id>: {"fp32_s": <s/frame>,
         "int8_s": <s/frame>, "psnr_change_db": <int8 minus fp32, dB>}}}
    """
    if not isinstance(section, dict) or not _finite(section.get("tolerance_db"), 0.0, 10.0):
        raise ConfigError(f"{source}: profile 'int8' needs a 'tolerance_db' in [0, 10]")
    levels = section.get("levels")
    if not isinstance(levels, dict) or len(levels) > MAX_INT8_LEVELS:
        raise ConfigError(f"{source}: profile 'int8' needs a 'levels' object of at most {MAX_INT8_LEVELS} entries")
    for cid, entry in levels.items():
        if not isinstance(entry, dict) or not all(_finite(entry.get(k), 1e-9, 1e6) for k in ("fp32_s", "int8_s")) \
                or not _finite(entry.get("psnr_change_db"), -100.0, 100.0):
            raise ConfigError(f"{source}: profile 'int8' level {cid!r} needs fp32_s, int8_s (> 0) and psnr_change_db")
    return section


def _check_profile(profile: Any, source: str) -> dict[str, Any]:
    try:
        return check_profile(profile, source)
    except (ConfigError, ModelError) as exc:
        raise ModelError(str(exc)) from None


def _is_single_file(path: Path) -> bool:
    return path.suffix == SINGLE_FILE_SUFFIX


def is_package_path(path: str | os.PathLike[str]) -> bool:
    """Whether `path` names a package (a folder, or a single file ending in ``.adasr``) rather
    than a model file; it need not exist."""
    path = Path(path)
    return _is_single_file(path) or path.is_dir()


class PackageInfo:
    """What every loaded package has, with or without torch: where it lives, its manifest, family
    and device profiles (`Package` adds the torch supernet, `PackageArrays` the NumPy tensors)."""

    def __init__(self, path: Path | None, manifest: dict[str, Any], family: Family,
                 profiles: dict[str, dict[str, Any]] | None = None) -> None:
        self.path, self.manifest, self.family = path, manifest, family
        self.profiles: dict[str, dict[str, Any]] = dict(profiles or {})

    @property
    def scale(self) -> int:
        return self.family.scale

    @property
    def precision(self) -> str:
        """The package's precision preference: "fp32" (also every package saved without one),
        "int8", or "auto" (int8 where this device's profile measured it faster and within its
        tolerance; `adasr.runtime.int8_rule`)."""
        return self.manifest.get("precision", "fp32")

    def family_for(self, device_key: str | None = None) -> Family:
        """The family with `measured_s` filled from a device's profile (None: the only profile,
        or the family as stored when there is none)."""
        if device_key is None:
            if not self.profiles:
                return self.family
            if len(self.profiles) > 1:
                raise ConfigError(f"package has profiles for {sorted(self.profiles)}; name one")
            device_key = next(iter(self.profiles))
        if device_key not in self.profiles:
            raise ConfigError(f"package has no profile for {device_key!r}; it has {sorted(self.profiles) or 'none'}")
        levels = self.profiles[device_key]["levels"]
        measured = {name: {cid: s["median_s"] for cid, s in entry["measured"].items()}
                    for name, entry in levels.items()}
        return self.family.with_measured(measured)


    def summary(self) -> dict[str, Any]:
        """What `adasr info` shows: JSON-ready."""
        return {
            "path": str(self.path) if self.path else None, "format": self.manifest.get("format"),
            "schema_version": self.manifest.get("schema_version"),
            "adasr_version": self.manifest.get("adasr_version"), "scale": self.scale,
            "space": self.space.to_dict(), "supernet_bytes": self.supernet_bytes(),
            "lr_hw": list(self.family.lr_hw), "search": self.family.search,
            "levels": [lv.to_dict() for lv in self.family], "profiles": sorted(self.profiles),
            "precision": self.precision, "own_levels": self.own_ids(),
            "info": self.manifest.get("info", {}),
        }


class PackageArrays(PackageInfo):
    """A package read without torch (`read_package_arrays`): its tensors as NumPy arrays by name
    (the supernet's, and ``own/<config id>/<name>`` for a level with its own weights)."""

    def __init__(self, path: Path | None, manifest: dict[str, Any], family: Family,
                 profiles: dict[str, dict[str, Any]], tensors: dict[str, Any]) -> None:
        super().__init__(path, manifest, family, profiles)
        self.tensors = tensors
        self._own = frozenset(manifest.get("own_levels", []))

    def has_own(self, level: int | Level) -> bool:
        lv = self.family[level] if isinstance(level, int) else level
        return lv.config.id in self._own

    def own_ids(self) -> list[str]:
        return sorted(self._own)

    @property
    def space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.manifest["space"])

    def supernet_bytes(self) -> int:
        """Bytes of the shared weights (the supernet's tensors, not the levels' own)."""
        return sum(a.nbytes for k, a in self.tensors.items() if not k.startswith(OWN_PREFIX))


class Package(PackageInfo):
    """A loaded (or freshly saved) package: supernet, family, profiles, and where it lives."""

    def __init__(self, path: Path | None, manifest: dict[str, Any], supernet: SuperNet, family: Family,
                 profiles: dict[str, dict[str, Any]] | None = None, own: Mapping[str, SubNet] | None = None) -> None:
        super().__init__(path, manifest, family, profiles)
        self.supernet = supernet
        # Levels with their own weights: config id -> a resident static sub-network (eval mode).
        self.own: dict[str, SubNet] = dict(own or {})

    def level_model(self, level: int | Level) -> SubNet:
        """A fresh static module (eval mode) computing level `level` (an index or a `Level` of
        the family): a copy of the level's own weights where it has them, else the supernet's
        sub-network extracted (`SuperNet.extract`)."""
        lv = self.family[level] if isinstance(level, int) else level
        own = self.own.get(lv.config.id)
        return copy.deepcopy(own).eval() if own is not None else self.supernet.extract(lv.config).eval()

    def has_own(self, level: int | Level) -> bool:
        """Whether level `level` (an index or a `Level`) runs on its own weights, not the supernet's."""
        lv = self.family[level] if isinstance(level, int) else level
        return lv.config.id in self.own

    @property
    def space(self) -> SearchSpace:
        return self.supernet.space

    @property
    def single_file(self) -> bool:
        return self.path is not None and _is_single_file(self.path)

    def add_profile(self, device_key: str, profile: dict[str, Any]) -> None:
        """Store a device profile (as `profile_package` returns) under `device_key`, replacing
        any earlier one; written to the package on disk at once (atomically)."""
        _check_key(device_key)
        profile = _check_profile(json.loads(json.dumps(profile)), f"profile {device_key}")
        self.profiles[device_key] = profile
        if self.path is None:
            return
        if self.single_file:
            _write_single_file(self.path, self.supernet, self.manifest, self.family, self.profiles, self.own)
        else:
            folder = self.path / PROFILES
            folder.mkdir(exist_ok=True)
            write_bytes_atomic(folder / f"{device_key}.json", _json(profile).encode("utf-8"))

    def set_precision(self, precision: str) -> None:
        """Make `precision` the package's preference (`Package.precision`); written to the
        package on disk at once (atomically)."""
        self.manifest = {**self.manifest, "precision": check_precision(precision)}
        if self.path is None:
            return
        if self.single_file:
            _write_single_file(self.path, self.supernet, self.manifest, self.family, self.profiles, self.own)
        else:
            write_bytes_atomic(self.path / MANIFEST, _json(self.manifest).encode("utf-8"))

    def supernet_bytes(self) -> int:
        return self.supernet.supernet_bytes()

    def own_ids(self) -> list[str]:
        return sorted(self.own)

    def __repr__(self) -> str:
        return f"Package({self.path}, x{self.scale}, {len(self.family)} levels, profiles={sorted(self.profiles)})"


# -- saving -----------------------------------------------------------------------------------------

def _manifest(supernet: SuperNet, info: Mapping[str, Any] | None, precision: str = "fp32") -> dict[str, Any]:
    check_precision(precision)
    return {"format": PACKAGE_FORMAT, "schema_version": PACKAGE_SCHEMA_VERSION, "adasr_version": _version(),
            "scale": supernet.scale, "space": supernet.space.to_dict(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "info": json.loads(json.dumps(dict(info or {}))), "levels": {"file": LEVELS}, "precision": precision}


def _state(supernet: SuperNet, own: Mapping[str, SubNet] | None = None) -> dict[str, torch.Tensor]:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in supernet.state_dict().items()}
    for cid, module in sorted((own or {}).items()):
        tensors.update({f"{OWN_PREFIX}{cid}/{k}": v.detach().to("cpu").contiguous()
                        for k, v in module.state_dict().items()})
    return tensors


def _with_own(manifest: dict[str, Any], own: Mapping[str, SubNet] | None) -> dict[str, Any]:
    manifest = {k: v for k, v in manifest.items() if k != "own_levels"}
    return {**manifest, "own_levels": sorted(own)} if own else manifest


def _check_own(own: Mapping[str, Any] | None, family: Family) -> dict[str, SubNet]:
    """ConfigError unless every own-weights entry is a `SubNet` of a family level's config."""
    from adasr.nn.supernet import SubNet

    ids = {lv.config.id for lv in family}
    out = {}
    for cid, module in (own or {}).items():
        if cid not in ids:
            raise ConfigError(f"own weights for {cid}, which is not a level of the family")
        if not isinstance(module, SubNet) or module.config.id != cid:
            raise ConfigError(f"own weights for level {cid} must be a SubNet of that config, "
                              f"got {type(module).__name__}")
        out[cid] = module
    return out


def _write_single_file(path: Path, supernet: SuperNet, manifest: dict[str, Any], family: Family,
                       profiles: Mapping[str, dict[str, Any]], own: Mapping[str, SubNet] | None = None) -> None:
    from safetensors.torch import save_file

    tensors = _state(supernet, own)
    manifest = {**_with_own(manifest, own), "weights": {"tensors_sha256": _tensors_sha256(tensors)}}
    meta = {_META_MANIFEST: json.dumps(manifest, sort_keys=True), _META_LEVELS: family.to_json()}
    meta.update({_META_PROFILE + key: json.dumps(p, sort_keys=True) for key, p in profiles.items()})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def save_package(path: str | os.PathLike[str], supernet: SuperNet, family: Family, *,
                 profiles: Mapping[str, dict[str, Any]] | None = None, info: Mapping[str, Any] | None = None,
                 overwrite: bool = False, precision: str = "fp32", own: Mapping[str, SubNet] | None = None) -> Package:
    """Write a package (a folder, or one file if `path` ends in ``.adasr``) and return it.

    `family` must hold configs of `supernet.space` at its scale. `info`: free-form JSON
    (training provenance, metrics). An existing destination is replaced only with `overwrite`.
    own: levels with their own weights, config id -> `SubNet` of that config (each a level of
    `family`); the other levels are the supernet's.
    """
    from safetensors.torch import save_file

    from adasr.nn.supernet import SuperNet

    path = Path(path)
    if not isinstance(supernet, SuperNet):
        raise ConfigError(f"a package holds a SuperNet, got {type(supernet).__name__}")
    if family.scale != supernet.scale:
        raise ConfigError(f"family is x{family.scale} but the supernet is x{supernet.scale}")
    try:
        family.validate(supernet.space)
    except ModelError as exc:
        raise ConfigError(str(exc)) from None
    own = _check_own(own, family)
    profiles = {_check_key(k): _check_profile(json.loads(json.dumps(p)), f"profile {k}")
                for k, p in (profiles or {}).items()}
    if path.exists() and not overwrite:
        raise OutputError(f"package already exists (pass overwrite to replace it): {path}")
    check_package_output(path)
    manifest = _manifest(supernet, info, precision)
    if _is_single_file(path):
        _write_single_file(path, supernet, manifest, family, profiles, own)
        return load_package(path, device=_device_of(supernet))
    if path.exists() and not path.is_dir():
        raise OutputError(f"package path exists and is not a folder: {path}")
    with atomic_folder(path, package_folder_reason) as tmp:
        weights = tmp / WEIGHTS
        with atomic_path(weights) as part:
            save_file(_state(supernet, own), str(part))
        manifest = _with_own(manifest, own)
        manifest["weights"] = {"file": WEIGHTS, "sha256": _sha256_file(weights)}
        write_bytes_atomic(tmp / LEVELS, family.to_json().encode("utf-8"))
        (tmp / PROFILES).mkdir()
        for key, p in profiles.items():
            write_bytes_atomic(tmp / PROFILES / f"{key}.json", _json(p).encode("utf-8"))
        write_bytes_atomic(tmp / MANIFEST, _json(manifest).encode("utf-8"))  # last: marks a whole package
    return load_package(path, device=_device_of(supernet))


def package_folder_reason(path: Path) -> str | None:
    """None if `path` is a package folder adasr wrote (format marker, only its own files), else
    why it must not be replaced."""
    def names(manifest: dict[str, Any]) -> list[str]:
        weights, levels = manifest.get("weights") or {}, manifest.get("levels") or {}
        return [weights.get("file", WEIGHTS), levels.get("file", LEVELS)]

    return owned_folder_reason(path, "format", PACKAGE_FORMAT, "package folder", names,
                               patterns=(f"{PROFILES}/*.json",))


def _is_single_file_package(path: Path) -> bool:
    try:
        with safe_open(str(path), framework="numpy", device="cpu") as handle:
            return _META_MANIFEST in (handle.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return False


def check_package_output(path: str | os.PathLike[str]) -> Path:
    """OutputError unless a package may be written at `path`: a new path, or a package adasr
    wrote (a folder of only its own files, or a single file with adasr's manifest)."""
    path = Path(path)
    if _is_single_file(path):
        check_writable(path)
        if path.exists() and not _is_single_file_package(path):
            raise OutputError(f"refusing to replace {path}: it is not an adasr package file")
        return path
    return check_replaceable(path, package_folder_reason)


def _device_of(net: SuperNet) -> torch.device:
    return net.head.weight.device


# -- loading ----------------------------------------------------------------------------------------

def _parse_json(text: str | bytes, what: str) -> Any:
    return loads(text, f"damaged package: {what}", ModelError)


def _check_manifest(manifest: Any, source: Path) -> dict[str, Any]:
    check_header(manifest, PACKAGE_FORMAT, PACKAGE_SCHEMA_VERSION, "package", source=source, key="format")
    for name in ("space", "weights", "scale"):
        if name not in manifest:
            raise ModelError(f"{source}: damaged package: manifest lacks {name!r}")
    if not isinstance(manifest["weights"], dict):
        raise ModelError(f"{source}: damaged package: manifest 'weights' is not an object")
    own = manifest.get("own_levels", [])
    if not isinstance(own, list) or len(own) > MAX_OWN_LEVELS or not all(isinstance(c, str) for c in own):
        raise ModelError(f"{source}: damaged package: manifest 'own_levels' is not a list of at most "
                         f"{MAX_OWN_LEVELS} config ids")
    if manifest.get("precision", "fp32") not in PRECISIONS:  # absent in packages saved before the field
        raise ModelError(f"{source}: damaged package: manifest precision {manifest['precision']!r} "
                         f"is not one of {', '.join(PRECISIONS)}")
    return manifest


def _build(manifest: dict[str, Any], shapes: dict[str, tuple[int, ...]], family_data: Any,
           source: Path) -> tuple[SearchSpace, SuperNet, Family, dict[str, SubNet]]:
    """The search space, the supernet (built only after the header's tensor names and shapes
    are checked against the space, on a meta-device build), the family, all validated, and the
    levels' own-weights modules (built and shape-checked the same way, weights not loaded)."""
    from adasr.nn.registry import build_for_weights

    try:
        space = SearchSpace.from_dict(manifest["space"])
    except ConfigError as exc:
        raise ModelError(f"{source}: damaged package: bad search space in the manifest ({exc})") from None
    if space.scale != manifest["scale"]:
        raise ModelError(f"{source}: damaged package: manifest scale {manifest['scale']!r} "
                         f"!= space scale {space.scale}")
    try:
        family = Family.from_dict(family_data).validate(space)
    except ModelError as exc:
        raise ModelError(f"{source}: damaged package: {exc}") from None
    if family.scale != space.scale:
        raise ModelError(f"{source}: damaged package: levels are x{family.scale}, the supernet x{space.scale}")
    own_ids = manifest.get("own_levels", [])
    split: dict[str, dict[str, tuple[int, ...]]] = {cid: {} for cid in own_ids}
    shared = {}
    for name, shape in shapes.items():
        if not name.startswith(OWN_PREFIX):
            shared[name] = shape
            continue
        cid, _, tensor = name[len(OWN_PREFIX):].partition("/")
        if cid not in split:
            raise ModelError(f"{source}: damaged package: tensor {name!r} belongs to no level the manifest lists "
                             f"as carrying its own weights")
        split[cid][tensor] = shape
    net = build_for_weights("supernet", {"space": space.to_dict()}, shared, f"{source}: damaged package",
                            what="the supernet")
    levels = {lv.config.id: lv for lv in family}
    own = {}
    for cid, own_shapes in split.items():
        if cid not in levels:
            raise ModelError(f"{source}: damaged package: own weights for {cid}, which is not a level")
        own[cid] = build_for_weights("subnet", {"config": cid}, own_shapes, f"{source}: damaged package",
                                     what=f"level {cid}'s own weights")
    return space, net, family, own


def _load_own(own: dict[str, SubNet], tensors: dict[str, torch.Tensor], device: str | torch.device,
              source: Path) -> dict[str, SubNet]:
    """Load the levels' own weights (taking their tensors out of `tensors`)."""
    from adasr.modelfile import refuse_non_finite

    for cid, module in own.items():
        prefix = f"{OWN_PREFIX}{cid}/"
        mine = {k[len(prefix):]: tensors.pop(k) for k in [k for k in tensors if k.startswith(prefix)]}
        refuse_non_finite(mine, f"{source}: damaged package")
        module.load_state_dict(mine, strict=True)
        own[cid] = module.to(device).eval()
    return own


def _load_weights(net: SuperNet, tensors: dict[str, torch.Tensor], device: str | torch.device,
                  source: Path) -> SuperNet:
    from adasr.modelfile import refuse_non_finite

    refuse_non_finite(tensors, f"{source}: damaged package")
    net.load_state_dict(tensors, strict=True)
    return net.to(device).eval()


def _header(path: Path, source: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Tensor shapes and metadata of a safetensors file, without loading a tensor."""
    try:
        with safe_open(str(path), framework="numpy", device="cpu") as handle:
            meta = dict(handle.metadata() or {})
            shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{source}: damaged package: weights are not a readable safetensors file ({first})") from None
    return shapes, meta


def _read_tensors(path: Path, source: Path, framework: str = "pt") -> dict[str, Any]:
    try:
        with safe_open(str(path), framework=framework, device="cpu") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{source}: damaged package: weights are not a readable safetensors file ({first})") from None


def open_package(path: str | os.PathLike[str] | None, scale: int, family: str = "codec", *,
                 arrays: bool = False) -> Any:
    """The one package loader of every entry point: `path` (None: the bundled package of `family`,
    `adasr.paths.bundled_package`, for `scale`),
    loaded and checked. InputError when it is missing; ConfigError for a single model file or a
    package of another scale; ModelError when it is damaged. arrays: read it without torch
    (`read_package_arrays`, a `PackageArrays`; what the ONNX runtime runs) instead of loading it."""
    from adasr.errors import InputError
    from adasr.paths import bundled_package

    p = Path(path) if path is not None else bundled_package(scale, family)
    if not p.exists():
        raise InputError(f"model package not found: {p}")
    if not is_package_path(p):
        hint = "a single model file needs torch: pip install 'adasr[torch]'" if arrays else \
            "pass --level to upscale with a plain model"
        raise ConfigError(f"{p} is a single model file; adaptive mode needs a package (folder or .adasr) "
                          f"with a family of levels ({hint})")
    pkg = read_package_arrays(p) if arrays else load_package(p)
    if pkg.scale != scale:
        raise ConfigError(f"{p} is a x{pkg.scale} package; --scale {scale} asked for x{scale}")
    return pkg


def load_package(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Package:
    """Load a package folder or single file; ModelError if it is damaged or not a package."""
    parts = _read_parts(Path(path), "pt")
    _, net, family, own = _build(parts.manifest, parts.shapes, parts.family_data, parts.path)
    parts.check_digest()
    own = _load_own(own, parts.tensors, device, parts.path)
    net = _load_weights(net, parts.tensors, device, parts.path)
    return Package(parts.path, parts.manifest, net, family, parts.profiles, own)


def read_package_arrays(path: str | os.PathLike[str]) -> PackageArrays:
    """Read a package without torch: its manifest, family and profiles, checked as `load_package`
    checks them (the weights digest included), and its tensors as NumPy arrays (what the ONNX
    runtime feeds its level graphs, `adasr.runtime.onnx_engine`). ModelError if it is damaged."""
    import numpy as np

    parts = _read_parts(Path(path), "numpy")
    try:
        space = SearchSpace.from_dict(parts.manifest["space"])
        family = Family.from_dict(parts.family_data).validate(space)
    except (ConfigError, ModelError) as exc:
        raise ModelError(f"{parts.path}: damaged package: {exc}") from None
    if family.scale != parts.manifest["scale"]:
        raise ModelError(f"{parts.path}: damaged package: levels are x{family.scale}, the manifest "
                         f"x{parts.manifest['scale']}")
    parts.check_digest()
    bad = [k for k, v in parts.tensors.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    if bad:
        raise ModelError(f"{parts.path}: damaged package: {len(bad)} weight tensor(s) hold NaN or infinity "
                         f"(e.g. {bad[0]})")
    return PackageArrays(parts.path, parts.manifest, family, parts.profiles, parts.tensors)


class _Parts(NamedTuple):
    path: Path
    manifest: dict[str, Any]
    family_data: Any
    shapes: dict[str, tuple[int, ...]]
    tensors: dict[str, Any]
    profiles: dict[str, dict[str, Any]]
    digest: str | None  # a single file's tensors digest, checked after the structure

    def check_digest(self) -> None:
        if self.digest is not None and _tensors_sha256(self.tensors) != self.digest:
            raise ModelError(f"{self.path}: damaged package: weights checksum mismatch (digest differs from the "
                             f"manifest)")


def _read_parts(path: Path, framework: str) -> _Parts:
    """Everything a package file or folder holds, checked (manifest, weights checksum, profiles),
    with its tensors read by safetensors as `framework` ("pt" or "numpy")."""
    if path.is_dir():
        return _read_folder(path, framework)
    if path.is_file():
        return _read_single_file(path, framework)
    raise ModelError(f"package not found: {path}")


def _read_folder(path: Path, framework: str) -> _Parts:
    if not (path / MANIFEST).exists():
        raise ModelError(f"{path}: not an adasr package (no {MANIFEST})")
    where = f"{path}: damaged package"
    manifest = _check_manifest(_parse_json(read_confined(path, MANIFEST, MAX_MANIFEST_BYTES, what=where,
                                                         error=ModelError), f"{path}/{MANIFEST}"), path)
    weights_name = manifest["weights"].get("file")
    digest = manifest["weights"].get("sha256")
    if not isinstance(weights_name, str) or not isinstance(digest, str):
        raise ModelError(f"{path}: damaged package: manifest 'weights' needs a plain file name and a sha256")
    weights = confined_file(path, weights_name, MAX_WEIGHTS_BYTES, what=where, error=ModelError)
    if _sha256_file(weights) != digest:
        raise ModelError(f"{path}: damaged package: {weights_name} checksum mismatch "
                         f"(sha256 differs from the manifest)")
    entry = manifest.get("levels")
    levels_name = entry.get("file", LEVELS) if isinstance(entry, dict) else LEVELS
    family_data = _parse_json(read_confined(path, levels_name, MAX_JSON_BYTES, what=where, error=ModelError),
                              f"{path}/{levels_name}")
    shapes, _ = _header(weights, path)
    tensors = _read_tensors(weights, path, framework)
    profiles = {}
    folder = path / PROFILES
    if folder.is_dir() and not folder.is_symlink():
        files = sorted(folder.glob("*.json"))
        if len(files) > MAX_PROFILES:
            raise ModelError(f"{path}: damaged package: {len(files)} profiles (at most {MAX_PROFILES})")
        for file in files:
            text = read_confined(folder, file.name, MAX_JSON_BYTES, what=where, error=ModelError)
            data = _parse_json(text, f"{path}/{PROFILES}/{file.name}")
            profiles[file.stem] = _check_profile(data, f"{path}/{PROFILES}/{file.name}")
    return _Parts(path, manifest, family_data, shapes, tensors, profiles, None)


def _read_single_file(path: Path, framework: str) -> _Parts:
    shapes, meta = _header(path, path)
    if _META_MANIFEST not in meta:
        raise ModelError(f"{path}: not an adasr package (no manifest in the file header)")
    manifest = _check_manifest(_parse_json(meta[_META_MANIFEST], f"{path} manifest"), path)
    digest = manifest["weights"].get("tensors_sha256")
    if not isinstance(digest, str):
        raise ModelError(f"{path}: damaged package: manifest lacks the weights digest")
    if _META_LEVELS not in meta:
        raise ModelError(f"{path}: damaged package: levels are missing")
    family_data = _parse_json(meta[_META_LEVELS], f"{path} levels")
    profile_keys = sorted(k for k in meta if k.startswith(_META_PROFILE))
    if len(profile_keys) > MAX_PROFILES:
        raise ModelError(f"{path}: damaged package: {len(profile_keys)} profiles (at most {MAX_PROFILES})")
    tensors = _read_tensors(path, path, framework)
    profiles = {}
    for key in profile_keys:
        name = key[len(_META_PROFILE):]
        profiles[name] = _check_profile(_parse_json(meta[key], f"{path} profile {name}"), f"{path} profile {name}")
    return _Parts(path, manifest, family_data, shapes, tensors, profiles, digest)
