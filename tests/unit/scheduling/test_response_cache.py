"""ResponseCache (LRU within a byte budget, time to live, owners) and the request keys it is used with."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.clock import FakeClock
from modelport.scheduling.cache_key import key_prefix, request_key
from modelport.scheduling.response_cache import ENTRY_OVERHEAD, InsertResult, ResponseCache, output_bytes
from modelport.tensor.records import InferInput, InferRequest, RequestedOutput

SECOND = 1_000_000_000


def outputs(nbytes: int, fill: int = 0) -> dict[str, np.ndarray]:
    return {"OUT": np.full(nbytes, fill, dtype=np.uint8)}


def entry_size(nbytes: int) -> int:
    return ENTRY_OVERHEAD + nbytes


# --- the cache ------------------------------------------------------------------------------------


def test_a_stored_entry_is_a_hit_and_an_unknown_key_a_miss() -> None:
    cache = ResponseCache(1000)
    assert cache.lookup(b"a") is None
    assert cache.insert(b"a", outputs(10, 7), owner=1) is InsertResult.STORED
    found = cache.lookup(b"a")
    assert found is not None and found["OUT"].tolist() == [7] * 10
    assert (cache.hits, cache.misses, cache.lookups) == (1, 1, 2)
    assert (cache.entry_count, cache.used_bytes) == (1, entry_size(10))
    assert cache.utilization == pytest.approx(entry_size(10) / 1000)


def test_entries_are_read_only_copies_owned_by_the_cache() -> None:
    cache = ResponseCache(1000)
    source = np.arange(6, dtype=np.float32).reshape(2, 3)[:, ::2]  # a strided view
    cache.insert(b"k", {"OUT": source}, owner=1)
    source[:] = -1  # the model's buffer is reused: the entry must not change
    stored = cache.lookup(b"k")
    assert stored is not None
    assert stored["OUT"].tolist() == [[0.0, 2.0], [3.0, 5.0]]
    assert not stored["OUT"].flags.writeable
    with pytest.raises(ValueError):
        stored["OUT"][0, 0] = 1


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = ResponseCache(3 * entry_size(100))
    for key in (b"a", b"b", b"c"):
        cache.insert(key, outputs(100), owner=1)
    assert cache.lookup(b"a") is not None  # a is now the most recently used; b the least
    cache.insert(b"d", outputs(100), owner=1)
    assert cache.lookup(b"b") is None
    assert all(cache.lookup(k) is not None for k in (b"a", b"c", b"d"))
    assert cache.evictions == 1
    assert cache.used_bytes == 3 * entry_size(100) and cache.entry_count == 3


def test_a_large_entry_evicts_as_many_as_it_needs() -> None:
    cache = ResponseCache(4 * entry_size(100))
    for key in (b"a", b"b", b"c", b"d"):
        cache.insert(key, outputs(100), owner=1)
    assert cache.insert(b"big", outputs(2 * entry_size(100)), owner=1) is InsertResult.STORED
    assert [cache.lookup(k) is not None for k in (b"a", b"b", b"c", b"d")] == [False, False, False, True]
    assert cache.evictions == 3
    assert cache.used_bytes == entry_size(100) + entry_size(2 * entry_size(100)) <= cache.size


def test_an_entry_larger_than_the_cache_is_not_stored_and_evicts_nothing() -> None:
    cache = ResponseCache(entry_size(100))
    cache.insert(b"small", outputs(100), owner=1)
    assert cache.insert(b"huge", outputs(101), owner=1) is InsertResult.TOO_LARGE
    assert cache.lookup(b"huge") is None
    assert cache.lookup(b"small") is not None
    assert cache.evictions == 0


def test_an_existing_key_keeps_its_entry() -> None:
    cache = ResponseCache(1000)
    cache.insert(b"k", outputs(4, 1), owner=1)
    assert cache.insert(b"k", outputs(4, 2), owner=1) is InsertResult.EXISTS
    found = cache.lookup(b"k")
    assert found is not None and found["OUT"].tolist() == [1, 1, 1, 1]
    assert cache.entry_count == 1 and cache.used_bytes == entry_size(4)


def test_an_entry_past_its_time_to_live_is_a_miss_and_is_dropped() -> None:
    clock = FakeClock()
    cache = ResponseCache(1000, clock)
    cache.insert(b"k", outputs(10), owner=1, ttl_ns=30 * SECOND)
    cache.insert(b"forever", outputs(10), owner=1)
    clock.advance(30 * SECOND - 1)
    assert cache.lookup(b"k") is not None
    clock.advance(1)
    assert cache.lookup(b"k") is None
    assert cache.entry_count == 1 and cache.used_bytes == entry_size(10)
    clock.advance(3600 * SECOND)
    assert cache.lookup(b"forever") is not None
    assert cache.insert(b"k", outputs(10), owner=1, ttl_ns=SECOND) is InsertResult.STORED


def test_purge_drops_one_owners_entries() -> None:
    cache = ResponseCache(1000)
    first, second = cache.new_owner(), cache.new_owner()
    assert first != second
    cache.insert(b"a", outputs(10), owner=first)
    cache.insert(b"b", outputs(10), owner=second)
    cache.insert(b"c", outputs(10), owner=first)
    assert cache.purge(first) == 2
    assert cache.lookup(b"a") is None and cache.lookup(b"c") is None
    assert cache.lookup(b"b") is not None
    assert cache.used_bytes == entry_size(10)


def test_bytes_outputs_count_each_element_and_its_length() -> None:
    strings = np.array([b"abc", b"", b"hello"], dtype=object)
    assert output_bytes(strings) == 3 * 4 + 8
    assert output_bytes(np.zeros((2, 3), np.float64)) == 48
    cache = ResponseCache(1000)
    cache.insert(b"s", {"OUT": strings}, owner=1)
    assert cache.used_bytes == ENTRY_OVERHEAD + 20


def test_the_cache_needs_a_positive_size() -> None:
    with pytest.raises(ValueError):
        ResponseCache(0)


# --- keys -----------------------------------------------------------------------------------------

PREFIX = key_prefix("m", 1, 1)


def request(*inputs: InferInput, outputs: tuple[str, ...] = (), **parameters: object) -> InferRequest:
    req = InferRequest(model_name="m", inputs=list(inputs), parameters=dict(parameters))
    req.outputs = [RequestedOutput(name) for name in outputs]
    return req


def tensor(name: str, data: np.ndarray, datatype: str = "FP32") -> InferInput:
    return InferInput(name, datatype, tuple(data.shape), data)


A = np.arange(6, dtype=np.float32).reshape(2, 3)


def test_identical_requests_have_one_key_whatever_their_input_order() -> None:
    b = np.ones(2, np.float32)
    one = request_key(PREFIX, request(tensor("A", A), tensor("B", b)))
    assert one == request_key(PREFIX, request(tensor("A", A.copy()), tensor("B", b.copy())))
    assert one == request_key(PREFIX, request(tensor("B", b), tensor("A", A)))
    assert len(one) == 16


def test_everything_that_changes_the_answer_changes_the_key() -> None:
    base = request_key(PREFIX, request(tensor("A", A)))
    other = A.copy()
    other[1, 2] = 99
    variants = [
        request_key(PREFIX, request(tensor("A", other))),  # bytes
        request_key(PREFIX, request(tensor("A", A.reshape(3, 2)))),  # shape
        request_key(PREFIX, request(tensor("A", A.view(np.int32), "INT32"))),  # datatype, same bytes
        request_key(PREFIX, request(tensor("B", A))),  # input name
        request_key(key_prefix("m", 2, 1), request(tensor("A", A))),  # version
        request_key(key_prefix("n", 1, 1), request(tensor("A", A))),  # model
        request_key(key_prefix("m", 1, 2), request(tensor("A", A))),  # another load of the version
        request_key(PREFIX, request(tensor("A", A), outputs=("OUT0",))),  # outputs asked for
        request_key(PREFIX, request(tensor("A", A), custom=1)),  # a parameter the model sees
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_server_side_parameters_and_output_order_do_not_change_the_key() -> None:
    base = request_key(PREFIX, request(tensor("A", A), outputs=("X", "Y")))
    assert base == request_key(PREFIX, request(tensor("A", A), outputs=("Y", "X"), priority=2, timeout=5))


def test_a_strided_input_hashes_as_its_contiguous_copy() -> None:
    wide = np.arange(12, dtype=np.float32).reshape(2, 6)
    strided = wide[:, ::2]
    assert not strided.flags.c_contiguous
    assert request_key(PREFIX, request(tensor("A", strided))) == request_key(
        PREFIX, request(tensor("A", np.ascontiguousarray(strided)))
    )


def test_bytes_elements_are_hashed_with_their_boundaries() -> None:
    def key(*items: bytes) -> bytes:
        return request_key(PREFIX, request(tensor("S", np.array(items, dtype=object), "BYTES")))

    assert key(b"ab", b"c") != key(b"a", b"bc")
    assert key(b"ab", b"c") == key(b"ab", b"c")
    assert key(b"x") == request_key(PREFIX, request(tensor("S", np.array(["x"], dtype=object), "BYTES")))
