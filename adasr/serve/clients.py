"""The live server's table of viewers: a bounded LRU with expiry and a per-address share.

Each request names its viewer (the ``X-Adasr-Client`` header, else its address). The table keeps
the `capacity` most recently seen viewers, forgets one unseen for `ttl_s` seconds, and lets one
address hold at most `per_address` of them: ids beyond that from the same address are counted
as that address, so no one sender can push real viewers out by inventing ids.

Leaf module: nothing of adasr.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["ClientTable"]


class ClientTable:
    """Viewer id -> (address, last seen); thread-safe. `active(now, window_s)` counts viewers seen
    in the last `window_s` seconds."""

    def __init__(self, capacity: int = 4096, ttl_s: float = 120.0, per_address: int = 16) -> None:
        if capacity < 1 or per_address < 1 or not ttl_s > 0:
            raise ValueError("capacity and per_address must be positive, ttl_s above 0")
        self.capacity, self.ttl_s, self.per_address = int(capacity), float(ttl_s), int(per_address)
        self._seen: OrderedDict[str, tuple[str, float]] = OrderedDict()  # least recently seen first
        self._by_address: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def _drop(self, key: str) -> None:
        address, _ = self._seen.pop(key)
        left = self._by_address[address] - 1
        if left:
            self._by_address[address] = left
        else:
            del self._by_address[address]

    def _expire(self, now: float) -> None:
        while self._seen:
            key, (_, last) = next(iter(self._seen.items()))
            if now - last <= self.ttl_s:
                return
            self._drop(key)

    def seen(self, client: str, address: str, now: float) -> str:
        """Note `client` (from `address`) at time `now`; returns the key it is counted under."""
        client, address = client[:64], address[:64]
        with self._lock:
            self._expire(now)
            key = client
            if key not in self._seen and self._by_address.get(address, 0) >= self.per_address:
                key = f"{address} (more)"  # this address holds its share: fold the rest into one entry
            if key in self._seen:
                self._seen.move_to_end(key)
                self._seen[key] = (self._seen[key][0], now)
                return key
            while len(self._seen) >= self.capacity:
                self._drop(next(iter(self._seen)))  # the least recently seen viewer
            self._seen[key] = (address, now)
            self._by_address[address] = self._by_address.get(address, 0) + 1
            return key

    def active(self, now: float, window_s: float = 10.0) -> int:
        with self._lock:
            return sum(1 for _, last in self._seen.values() if now - last < window_s)

    def __contains__(self, client: str) -> bool:
        with self._lock:
            return client in self._seen
