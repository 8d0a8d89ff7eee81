"""SRVC's lightweight spatially-adaptive SR model, as the stream package names it.

The model itself lives with the other architectures in `adasr.nn.srvc` (registered as
``srvc``, so the model registry finds it without importing `adasr.stream`).
"""

from adasr.nn.srvc import SRVCNet, build_srvc

__all__ = ["SRVCNet", "build_srvc"]
