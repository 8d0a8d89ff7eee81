"""Live adaptive model streaming (AMS, thesis chapter 4) as a network service.

* `config`: `TrainerConfig` (T_horizon, T_update, K, eta, scheme), `ASRConfig`, `ATRConfig`.
* `adaptive`: phi-score, `SamplingRate` (ASR, Eq. 4.1), `TrainingRate` (ATR, Eq. B.1).
* `trainer`: `SampleBuffer`, `ChannelTrainer` (Algorithm 2 with Algorithm 3's sparse updates).
* `media`: `LiveSource` (a file at its frame rate, looping; or a URL), MPEG-TS segments.
* `channel`: `Channel` (source -> segments + trainer; pluggable `ModelSource`), `Hub` (the worker).
* `scheduler`: `RoundRobin`, `GainDriven` (several channels on one server's compute).
* `server`: `LiveServer` / `make_app` (aiohttp, 127.0.0.1); `client`: `LiveClient` (the edge device).
"""

from __future__ import annotations

from adasr.serve.channel import Channel as Channel
from adasr.serve.channel import ChannelConfig as ChannelConfig
from adasr.serve.channel import GivenModel as GivenModel
from adasr.serve.channel import Hub as Hub
from adasr.serve.channel import NamedModel as NamedModel
from adasr.serve.config import ASRConfig as ASRConfig
from adasr.serve.config import ATRConfig as ATRConfig
from adasr.serve.config import TrainerConfig as TrainerConfig
from adasr.serve.trainer import ChannelTrainer as ChannelTrainer

__all__ = ["ASRConfig", "ATRConfig", "Channel", "ChannelConfig", "ChannelTrainer", "GivenModel", "Hub", "NamedModel",
           "TrainerConfig"]
