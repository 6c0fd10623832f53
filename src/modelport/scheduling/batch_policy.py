"""The dynamic batching decision, as a pure function of the queue and the time.

Given the queued requests (oldest first, each with its batch size and shape signature) and `now`,
decide to send the first n requests now, or to wait t nanoseconds; the same rules as Triton's
dynamic batcher (see the module-level notes in dynamic_batcher.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class BatchRules:
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_ns: int

    @property
    def max_preferred(self) -> int:
        return max(self.preferred_batch_sizes) if self.preferred_batch_sizes else self.max_batch_size


class Candidate(Protocol):
    """What the policy sees of one queued request."""

    @property
    def batch_size(self) -> int: ...
    @property
    def signature(self) -> Any: ...
    @property
    def enqueue_ns(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Decision:
    """Send the first `send_count` requests (`rows` rows) now, or wait `wait_ns` (None: until woken)."""

    send_count: int = 0
    rows: int = 0
    wait_ns: int | None = None
    reason: str = ""


def decide(queue: Iterable[Candidate], now_ns: int, rules: BatchRules, *, grow: bool = False) -> Decision:
    """Triton's batch-forming rules.

    `grow` is set when the requests waited for a busy instance: the batch is then allowed to grow
    past the preferred sizes up to max_batch_size, as Triton's prefetched batches do.
    """
    rows = count = 0
    best_rows = best_count = 0
    stop_reason = ""
    signature: Any = None
    oldest_ns: int | None = None
    max_preferred = rules.max_preferred
    for item in queue:
        if count == 0:
            signature, oldest_ns = item.signature, item.enqueue_ns
        else:
            if rows + item.batch_size > max_preferred and best_count == 0:
                best_rows, best_count = rows, count
            if rows + item.batch_size > rules.max_batch_size:
                stop_reason = "max batch size reached"
                break
            if item.signature != signature:
                stop_reason = "next request has different shapes"
                break
        rows += item.batch_size
        count += 1
        if rows in rules.preferred_batch_sizes:
            best_rows, best_count = rows, count
    if count == 0 or oldest_ns is None:
        return Decision()
    age = now_ns - oldest_ns
    delay = rules.max_queue_delay_ns
    delay_exceeded = delay != 0 and age >= delay
    if best_count and not delay_exceeded and not grow:
        return Decision(best_count, best_rows, reason="preferred batch size reached")
    if stop_reason or rows >= max_preferred:
        return Decision(count, rows, reason=stop_reason or "max preferred batch size reached")
    if delay == 0:
        return Decision(count, rows, reason="no queue delay configured")
    if delay_exceeded:
        return Decision(count, rows, reason="max queue delay expired")
    if grow and best_count:
        return Decision(count, rows, reason="instance became free")
    return Decision(wait_ns=delay - age, reason="waiting for more requests")
