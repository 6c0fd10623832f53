"""The pure batching decision: Triton's dynamic batcher rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelport.scheduling.batch_policy import BatchRules, decide

MS = 1_000_000


@dataclass
class Item:
    batch_size: int = 1
    signature: Any = None
    enqueue_ns: int = 0


def rules(max_batch: int = 8, preferred: tuple[int, ...] = (4,), delay_ms: int = 200) -> BatchRules:
    return BatchRules(max_batch, preferred, delay_ms * MS)


def test_empty_queue_does_nothing() -> None:
    decision = decide([], 0, rules())
    assert decision.send_count == 0 and decision.wait_ns is None


def test_waits_for_the_oldest_request_delay_below_preferred_size() -> None:
    queue = [Item(enqueue_ns=0), Item(enqueue_ns=30 * MS)]
    decision = decide(queue, 50 * MS, rules())
    assert decision.send_count == 0
    assert decision.wait_ns == 150 * MS  # measured from the OLDEST request


def test_preferred_size_is_sent_at_once() -> None:
    queue = [Item(enqueue_ns=i) for i in range(4)]
    decision = decide(queue, 10, rules())
    assert (decision.send_count, decision.rows) == (4, 4)


def test_largest_reachable_preferred_size_wins_and_rest_waits() -> None:
    queue = [Item() for _ in range(6)]
    decision = decide(queue, 1 * MS, rules(preferred=(2, 4)))
    assert decision.rows == 4


def test_delay_expiry_sends_what_is_queued() -> None:
    queue = [Item(enqueue_ns=0), Item(enqueue_ns=1)]
    decision = decide(queue, 200 * MS, rules())
    assert (decision.send_count, decision.reason) == (2, "max queue delay expired")


def test_batch_never_exceeds_max_batch_size() -> None:
    queue = [Item() for _ in range(20)]
    decision = decide(queue, 0, rules(max_batch=8, preferred=(), delay_ms=0))
    assert decision.rows == 8


def test_request_batch_size_counts_in_full() -> None:
    # three batch-3 requests with preferred [4]: 3+3 > 4, so each goes alone (Triton's behaviour)
    queue = [Item(batch_size=3) for _ in range(3)]
    decision = decide(queue, 0, rules())
    assert (decision.send_count, decision.rows) == (1, 3)


def test_a_single_large_request_goes_immediately() -> None:
    decision = decide([Item(batch_size=8)], 0, rules())
    assert decision.rows == 8


def test_different_shapes_end_the_batch_without_reordering() -> None:
    queue = [Item(signature="a"), Item(signature="b"), Item(signature="a")]
    decision = decide(queue, 0, rules())
    assert (decision.send_count, decision.reason) == (1, "next request has different shapes")


def test_zero_delay_sends_whatever_is_queued() -> None:
    decision = decide([Item(), Item()], 0, rules(delay_ms=0))
    assert decision.send_count == 2


def test_grow_lets_a_batch_pass_preferred_sizes_after_waiting_for_an_instance() -> None:
    queue = [Item() for _ in range(5)]
    assert decide(queue, 1, rules()).rows == 4
    assert decide(queue, 1, rules(), grow=True).rows == 5


def test_no_preferred_sizes_means_max_batch_size_is_the_target() -> None:
    queue = [Item() for _ in range(8)]
    decision = decide(queue, 0, rules(preferred=()))
    assert decision.rows == 8 and decision.reason == "max preferred batch size reached"
