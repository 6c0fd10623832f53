"""ResponseCache: the server's one response cache, least recently used first out of a byte budget.

Like Triton's local cache it is shared by every model that enables it, and an entry larger than the
whole cache is not stored. Entries are read-only copies of a request's outputs, owned by the cache,
under the request's key (scheduling.cache_key); an entry can carry an expiry time (a model's time to
live). The cache is used from the event loop only (the schedulers' `submit`), so it needs no lock.
"""

from __future__ import annotations

import enum
import itertools
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from modelport.clock import Clock, MonotonicClock

Outputs = dict[str, np.ndarray]
# Bytes counted per entry on top of its outputs' data, so that entries of empty outputs also add up.
ENTRY_OVERHEAD = 64


class InsertResult(enum.Enum):
    STORED = "stored"
    EXISTS = "exists"  # an entry with the key is there already (kept as it is)
    TOO_LARGE = "too large"  # the entry alone is larger than the cache


@dataclass(slots=True)
class _Entry:
    outputs: Outputs
    byte_size: int
    owner: int
    expires_ns: int | None


class ResponseCache:
    """Outputs by request key, evicted least recently used first to stay within `size` bytes.

    The counters are Triton's local-cache figures (nv_cache_num_hits ...), for every model at once.
    """

    def __init__(self, size: int, clock: Clock | None = None) -> None:
        if size < 1:
            raise ValueError(f"the response cache needs a positive size, got {size}")
        self.size = size
        self._clock = clock or MonotonicClock()
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()  # least recently used first
        self._owners = itertools.count(1)
        self.used_bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.lookup_ns = 0
        self.insertion_ns = 0

    @property
    def lookups(self) -> int:
        return self.hits + self.misses

    @property
    def entry_count(self) -> int:
        return len(self._entries)

    @property
    def utilization(self) -> float:
        """The fraction of the size in use, 0.0 to 1.0."""
        return self.used_bytes / self.size

    def new_owner(self) -> int:
        """A token for one user of the cache (a loaded model version), to `purge` its entries later."""
        return next(self._owners)

    def lookup(self, key: bytes) -> Outputs | None:
        """The outputs stored under `key` (now the most recently used), or None; an expired entry is
        dropped and is a miss."""
        start = self._clock.now_ns()
        entry = self._entries.get(key)
        if entry is not None and entry.expires_ns is not None and start >= entry.expires_ns:
            self._drop(key)
            entry = None
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
            self._entries.move_to_end(key)
        self.lookup_ns += self._clock.now_ns() - start
        return None if entry is None else entry.outputs

    def insert(self, key: bytes, outputs: Outputs, owner: int, ttl_ns: int | None = None) -> InsertResult:
        """Store copies of `outputs` under `key`, evicting the least recently used entries for room."""
        start = self._clock.now_ns()
        try:
            if key in self._entries:
                return InsertResult.EXISTS
            byte_size = ENTRY_OVERHEAD + sum(output_bytes(a) for a in outputs.values())
            if byte_size > self.size:
                return InsertResult.TOO_LARGE
            while self.used_bytes + byte_size > self.size:
                self._drop(next(iter(self._entries)))
                self.evictions += 1
            expires = None if ttl_ns is None else start + ttl_ns
            self._entries[key] = _Entry(_owned_copies(outputs), byte_size, owner, expires)
            self.used_bytes += byte_size
            return InsertResult.STORED
        finally:
            self.insertion_ns += self._clock.now_ns() - start

    def purge(self, owner: int) -> int:
        """Drop every entry of `owner` (a version that unloads); the number dropped."""
        keys = [key for key, entry in self._entries.items() if entry.owner == owner]
        for key in keys:
            self._drop(key)
        return len(keys)

    def _drop(self, key: bytes) -> None:
        self.used_bytes -= self._entries.pop(key).byte_size


def output_bytes(data: np.ndarray) -> int:
    """The bytes an output holds: its data, or for BYTES (object) tensors each element and its
    4-byte length, as the binary protocol carries them."""
    array = np.asarray(data)
    if array.dtype != object:
        return int(array.nbytes)
    return sum(4 + (len(item) if isinstance(item, (bytes, str)) else 8) for item in array.flat)


def _owned_copies(outputs: Outputs) -> Outputs:
    copies: Outputs = {}
    for name, array in outputs.items():
        copy = np.array(array, copy=True, order="C")
        copy.flags.writeable = False
        copies[name] = copy
    return copies
