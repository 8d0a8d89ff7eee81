"""Settings of a live channel's trainer: the AMS parameters (thesis chapter 4, Appendix B).

The thesis runs semantic segmentation on 10-minute videos with a V100 at the server:
T_horizon = 240 s, T_update = 10 s, K = 20, ASR r in [0.1, 1] fps with delta_t = 10 s, ATR
gamma_0 = 0.25 fps, gamma_1 = 0.35 fps, Delta = 2 s, tau_min = T_update. Here the server is a
shared 2-core CPU and live sessions last about a minute (the shared clips are 5-80 s long), so
every time constant is scaled down by about 15 and every rate up by 5 (the sampling rates keep
the thesis' ratios r_max / r_min = 10 and gamma_1 / gamma_0 = 1.4):

=============  ======  ========  ==================================================================
parameter      thesis  here      why
=============  ======  ========  ==================================================================
T_horizon      240 s   16 s      a session of ~60 s must see several horizons (scene changes)
T_update       10 s    2 s       one update per 2-s stretch, like the SRVC encoder's tau = 2 s
K              20      20        20 Adam steps of 8 crops of 32x32 fit in ~15 % of one core per T_update
eta            5 %     5 %       the same gradient-guided fraction (Algorithm 3)
r_min, r_max   0.1, 1  0.5, 5    a 16-s horizon at 0.1 fps would hold one or two frames
delta_t        10 s    2 s       ASR and ATR decide once per default T_update
gamma_0, _1    .25,.35 1.25,1.75 scaled with the sampling rates (x5)
Delta          2 s     1 s       scaled with T_update
tau_min        10 s    2 s       = T_update
=============  ======  ========  ==================================================================

phi-score (Eq. 4.1) is the task loss between consecutive labels: here the HR frames are the
labels and the task loss is SR's MSE on [0, 1] pixels, so phi_k = MSE(HR_k, HR_{k-1}). The
target phi = 0.004 (consecutive samples 24 dB apart) and eta_r = 100 fps per unit of phi were
chosen on the shared clips so that a static camera (vtest) drifts to r_min and a cut-heavy film
(megamind, bikes) sits near r_max.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from adasr.errors import ConfigError
from adasr.threads import PRECISIONS

__all__ = ["ASRConfig", "ATRConfig", "ON_CUT", "Row", "SCHEMES", "TrainerConfig", "parse_row"]

SCHEMES = ("none", "one_time", "jit", "ams")
ON_CUT = ("keep", "reset", "base")
DELTA_DTYPES = ("float16", "int8", "int4", "float32")  # the model-update values (adasr.stream.codec.quantise)


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class ASRConfig:
    """Adaptive sampling rate (thesis Eq. 4.1): r <- clip(r + eta_r (mean phi - phi_target))."""

    enabled: bool = False
    r_min: float = 0.5
    r_max: float = 5.0
    r_init: float = 2.0  # also the fixed rate when ASR is off
    eta_r: float = 100.0
    phi_target: float = 0.004
    delta_t: float = 2.0

    def with_rate(self, rate: float) -> ASRConfig:
        """The same, sampling `rate` frames per second (the fixed rate, or ASR's start), the bounds
        widened to hold it."""
        return replace(self, r_init=rate, r_min=min(self.r_min, rate), r_max=max(self.r_max, rate))

    def __post_init__(self) -> None:
        for name in ("r_min", "r_max", "r_init", "eta_r", "phi_target", "delta_t"):
            _positive(name, getattr(self, name))
        if not self.r_min <= self.r_init <= self.r_max or self.r_max > 120:
            raise ConfigError(f"sampling rates need r_min <= r_init <= r_max <= 120 fps, got "
                              f"{self.r_min}, {self.r_init}, {self.r_max}")


@dataclass(frozen=True)
class ATRConfig:
    """Adaptive training rate (thesis Eq. B.1): slow down by Delta while r < gamma_0 ... > gamma_1."""

    enabled: bool = False
    gamma_0: float = 1.25
    gamma_1: float = 1.75
    delta: float = 1.0
    tau_min: float = 2.0
    tau_max: float = 16.0  # a bound the thesis leaves open: never wait longer than one horizon
    delta_t: float = 2.0

    def __post_init__(self) -> None:
        for name in ("gamma_0", "gamma_1", "delta", "tau_min", "tau_max", "delta_t"):
            _positive(name, getattr(self, name))
        if self.gamma_1 < self.gamma_0 or self.tau_max < self.tau_min:
            raise ConfigError("ATR needs gamma_0 <= gamma_1 and tau_min <= tau_max")


@dataclass(frozen=True)
class TrainerConfig:
    """One channel's training job.

    scheme: "none" (the client keeps its base model), "one_time" (one full-parameter update
    after `one_time_s` seconds, then nothing), "jit" (Just-In-Time: train on the newest sample
    until its PSNR gain over the base model reaches `jit_gain_db`), "ams" (Algorithm 2: every
    T_update, K steps over the last T_horizon seconds, eta of the parameters, Algorithm 3).

    on_cut: what a scene cut does (a cut: two consecutive samples further apart than `cut_phi`,
    the phi-score of Eq. 4.1, i.e. MSE on [0, 1]): "keep" (nothing: the horizon forgets the old
    scene in its own time), "reset" (the buffer keeps only the new scene and Adam's moments start
    again) or "base" (as reset, and the clients' model goes back to the generic base first).
    """

    scheme: str = "ams"
    t_horizon: float = 16.0
    t_update: float = 2.0
    k: int = 20
    eta: float = 0.05
    strategy: str = "ams"  # Algorithm 3: the eta fraction with the largest previous Adam update
    batch: int = 8
    patch: int = 32
    lr: float = 1e-3
    one_time_lr: float = 1e-4  # every parameter moves: Adam at 1e-3 from a fresh state hurts (BENCHMARKS)
    # the updates' values: int8 with a float32 scale per record gave the same AMS gain as float16 at 64 %
    # of the downlink (bench adapt, docs/journal/29)
    delta_dtype: str = "int8"
    buffer_max: int = 512  # samples kept at most (bounds memory whatever r and T_horizon are)
    one_time_s: float = 10.0
    jit_gain_db: float = 1.0
    jit_chunk: int = 5
    jit_max_steps: int = 40
    on_cut: str = "keep"
    cut_phi: float = 0.02  # consecutive samples ~17 dB apart: a different shot, not motion
    seed: int = 0
    precision: str = "auto"  # of the training steps: fp32, bf16 or auto (adasr.stream.adapt)
    asr: ASRConfig = field(default_factory=ASRConfig)
    atr: ATRConfig = field(default_factory=ATRConfig)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ConfigError(f"unknown scheme {self.scheme!r}; choose one of {', '.join(SCHEMES)}")
        if self.on_cut not in ON_CUT:
            raise ConfigError(f"unknown on_cut {self.on_cut!r}; choose one of {', '.join(ON_CUT)}")
        for name in ("t_horizon", "t_update", "eta", "lr", "one_time_lr", "one_time_s", "jit_gain_db", "cut_phi"):
            _positive(name, getattr(self, name))
        if self.eta > 1:
            raise ConfigError(f"eta must be in (0, 1], got {self.eta}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.delta_dtype not in DELTA_DTYPES:
            raise ConfigError(f"unknown delta_dtype {self.delta_dtype!r}; choose one of {', '.join(DELTA_DTYPES)}")
        for name, hi in (("k", 10_000), ("batch", 256), ("patch", 512), ("buffer_max", 100_000),
                         ("jit_chunk", 10_000), ("jit_max_steps", 100_000)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= hi:
                raise ConfigError(f"{name} must be an integer in [1, {hi}], got {v!r}")
        if self.patch < 4:
            raise ConfigError("patch must be at least 4")

    @classmethod
    def named(cls, name: str, **kw: Any) -> TrainerConfig:
        """The benchmark's schemes: none, one_time, jit, ams, ams_asr_atr."""
        if name == "ams_asr_atr":
            return cls(scheme="ams", asr=ASRConfig(enabled=True), atr=ATRConfig(enabled=True), **kw)
        return cls(scheme=name, **kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- rows: a scheme and settings as one string ("ams:k=40,t_horizon=4"; bench adapt, bench live --row) --

#: keys a row may set (TrainerConfig fields), with their type
_KEYS: dict[str, type] = {"k": int, "eta": float, "lr": float, "t_horizon": float, "t_update": float, "batch": int,
                          "patch": int, "strategy": str, "on_cut": str, "cut_phi": float, "one_time_s": float,
                          "one_time_lr": float, "jit_gain_db": float, "jit_max_steps": int, "delta_dtype": str,
                          "precision": str, "hold": int, "rate": float}
#: row keys that are the channel's, not the trainer's (ChannelConfig fields)
_CHANNEL_KEYS = ("hold",)
#: row keys of the sampling rate (ASRConfig: `rate` is r_init, the fixed rate when ASR is off)
_RATE_KEYS = ("rate",)


@dataclass(frozen=True)
class Row:
    """One setting: a scheme (none, one_time, jit, ams, ams_asr_atr) and TrainerConfig overrides."""

    scheme: str
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        return self.scheme + ("" if not self.overrides else ":" + ",".join(f"{k}={v}" for k, v in self.overrides))

    def trainer_config(self, seed: int = 0) -> TrainerConfig:
        cfg = TrainerConfig.named(self.scheme, seed=seed,
                                  **{k: v for k, v in self.overrides if k not in (*_CHANNEL_KEYS, *_RATE_KEYS)})
        rate = dict(self.overrides).get("rate")
        if rate is not None:  # frames per second that join the buffer (ASR's start when it is on)
            cfg = replace(cfg, asr=cfg.asr.with_rate(rate))
        return cfg

    @property
    def hold(self) -> int:
        """Segments the channel holds back before publishing them (ChannelConfig.hold)."""
        return int(dict(self.overrides).get("hold", 0))


def parse_row(text: str) -> Row:
    """'ams:k=60,eta=1' -> Row (the scheme, then NAME=VALUE overrides of the trainer's settings)."""
    scheme, _, rest = text.strip().partition(":")
    known = (*SCHEMES, "ams_asr_atr")
    if scheme not in known:
        raise ConfigError(f"unknown scheme {scheme!r} in row {text!r}; choose from {', '.join(known)}")
    overrides = []
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in _KEYS:
            raise ConfigError(f"row {text!r}: expected NAME=VALUE with NAME one of {', '.join(_KEYS)}, got {item!r}")
        try:
            v = _KEYS[key](value)
        except ValueError:
            raise ConfigError(f"row {text!r}: {key} needs a {_KEYS[key].__name__}, got {value!r}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"row {text!r}: {key} must be finite")
        overrides.append((key, v))
    row = Row(scheme, tuple(overrides))
    row.trainer_config()  # the trainer's own checks (ranges, names) now, not mid-run
    if not 0 <= row.hold <= 30:
        raise ConfigError(f"row {text!r}: hold must be 0..30 segments")
    return row
