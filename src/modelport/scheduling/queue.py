"""The bounded, prioritised request queue of one model version, with per-request deadlines."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelport.config.spec import DynamicBatchingSpec, QueuePolicySpec
from modelport.errors import ModelUnavailable, with_request_id
from modelport.tensor.records import InferRequest

# A queue whose policy sets no max_queue_size is still bounded by this many requests.
DEFAULT_QUEUE_CAP = 4096


@dataclass(slots=True, eq=False)
class PendingRequest:
    """A queued request: its future, when it arrived, its size and batching signature."""

    request: InferRequest
    future: asyncio.Future[Any]
    enqueue_ns: int
    batch_size: int
    signature: Any  # requests with different signatures never share a batch (None = any)
    deadline_ns: int | None = None
    delay_on_timeout: bool = False
    sequence: int = 0
    result: Any = None  # outputs or an exception, kept until released in order
    done: bool = False
    own_timeout: bool = False  # the deadline is the request's own `timeout`: it holds while running too
    expired: bool = False  # answered at its deadline while its batch was running


@dataclass(slots=True)
class _Level:
    policy: QueuePolicySpec
    items: deque[PendingRequest] = field(default_factory=deque)
    delayed: deque[PendingRequest] = field(default_factory=deque)


class RequestQueue:
    """Per-priority-level FIFO queues; level 1 is served first; each level bounded by its policy."""

    def __init__(self, spec: DynamicBatchingSpec | None) -> None:
        spec = spec or DynamicBatchingSpec()
        self._default_level = spec.default_priority_level if spec.priority_levels > 0 else 1
        self._max_level = max(spec.priority_levels, 1)
        self._levels = {
            level: _Level(spec.priority_queue_policy.get(level, spec.default_queue_policy))
            for level in range(1, self._max_level + 1)
        }

    def __len__(self) -> int:
        return sum(len(lv.items) + len(lv.delayed) for lv in self._levels.values())

    def __bool__(self) -> bool:
        return any(lv.items or lv.delayed for lv in self._levels.values())

    def level_for(self, request: InferRequest) -> int:
        """The request's `priority` parameter, or the default level when 0 or out of range."""
        priority = request.parameters.get("priority", 0)
        if isinstance(priority, int) and not isinstance(priority, bool) and 1 <= priority <= self._max_level:
            return priority
        return self._default_level

    def policy(self, level: int) -> QueuePolicySpec:
        return self._levels[level].policy

    def push(self, item: PendingRequest, level: int) -> None:
        """Append, or reject at once with UNAVAILABLE when the level is full."""
        lv = self._levels[level]
        cap = lv.policy.max_queue_size or DEFAULT_QUEUE_CAP
        if len(lv.items) + len(lv.delayed) >= cap:
            raise ModelUnavailable(with_request_id(item.request.id, "Exceeds maximum queue size"))
        lv.items.append(item)

    def __iter__(self) -> Iterator[PendingRequest]:
        """Requests in the order they would be batched: by level, FIFO, delayed ones last."""
        for level in sorted(self._levels):
            yield from self._levels[level].items
            yield from self._levels[level].delayed

    def pop_front(self, count: int) -> list[PendingRequest]:
        """Remove and return the first `count` requests in batching order."""
        taken: list[PendingRequest] = []
        for level in sorted(self._levels):
            lv = self._levels[level]
            for source in (lv.items, lv.delayed):
                while source and len(taken) < count:
                    taken.append(source.popleft())
        return taken

    def remove_finished(self) -> int:
        """Drop requests whose caller went away (cancelled future); returns how many."""
        removed = 0
        for lv in self._levels.values():
            for source in (lv.items, lv.delayed):
                if any(p.future.done() for p in source):
                    keep = [p for p in source if not p.future.done()]
                    removed += len(source) - len(keep)
                    source.clear()
                    source.extend(keep)
        return removed

    def expire(self, now_ns: int) -> list[PendingRequest]:
        """Requests past their deadline: REJECT ones are removed and returned; DELAY ones move back."""
        rejected: list[PendingRequest] = []
        for lv in self._levels.values():
            if not any(p.deadline_ns is not None and p.deadline_ns <= now_ns for p in lv.items):
                continue
            keep: deque[PendingRequest] = deque()
            for p in lv.items:
                if p.deadline_ns is None or p.deadline_ns > now_ns:
                    keep.append(p)
                elif p.delay_on_timeout:
                    p.deadline_ns = None
                    lv.delayed.append(p)
                else:
                    rejected.append(p)
            lv.items = keep
        return rejected

    def next_deadline_ns(self) -> int | None:
        deadlines = [
            p.deadline_ns for lv in self._levels.values() for p in lv.items if p.deadline_ns is not None
        ]
        return min(deadlines) if deadlines else None

    def drain(self) -> list[PendingRequest]:
        """Remove everything."""
        return self.pop_front(len(self))
