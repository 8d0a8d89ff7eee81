"""Content-adaptive model streaming (SRVC encoder/decoder with AMS-style sparse updates).

* `codec`: the model-update codec (full model record, per-segment sparse delta records).
* `adapt`: sparse adaptation (gradient-guided, AMS Algorithm 3, random, first/last layers).
* `model`: SRVC's lightweight spatially-adaptive SR model (registered as ``srvc``).
* `encoder`: HR video -> LR content stream + model stream; `container`: folder / single file.
* `reader`: `StreamReader` (frames with deltas applied at segment boundaries), `decode_stream`.
"""

from __future__ import annotations

from adasr.stream.adapt import STRATEGIES as STRATEGIES
from adasr.stream.adapt import AdaptConfig as AdaptConfig
from adasr.stream.adapt import SparseAdapter as SparseAdapter
from adasr.stream.codec import DeltaError as DeltaError
from adasr.stream.codec import ModelState as ModelState
from adasr.stream.codec import encode_delta as encode_delta
from adasr.stream.codec import encode_full as encode_full
from adasr.stream.codec import read_record as read_record
from adasr.stream.encoder import EncodeSettings as EncodeSettings
from adasr.stream.encoder import encode_video as encode_video
from adasr.stream.reader import StreamReader as StreamReader
from adasr.stream.reader import decode_stream as decode_stream

__all__ = ["AdaptConfig", "DeltaError", "EncodeSettings", "ModelState", "STRATEGIES", "SparseAdapter", "StreamReader",
           "decode_stream", "encode_delta", "encode_full", "encode_video", "read_record"]
