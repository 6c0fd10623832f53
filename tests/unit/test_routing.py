"""Traffic routing between versions: weighted round-robin, pins, fallbacks, parsing."""

from __future__ import annotations

from collections import Counter

import pytest

from modelport.errors import InvalidInput
from modelport.repository.routing import (
    CONFIG_PIN,
    CONFIG_WEIGHTS,
    TrafficPolicy,
    TrafficRouter,
    parse_weights,
    policy_from_parameters,
)


def test_default_is_the_newest_ready_version() -> None:
    router = TrafficRouter()
    assert router.choose([1, 2, 3]) == 3
    assert router.choose([]) is None
    assert router.source == "default"


def test_split_is_exact_and_interleaved() -> None:
    router = TrafficRouter()
    router.set_weights({1: 90, 2: 10})
    picks = [router.choose([1, 2]) for _ in range(1000)]
    assert Counter(picks) == {1: 900, 2: 100}
    # spread evenly: every window of 10 consecutive picks holds exactly one version-2 pick
    assert all(picks[i : i + 10].count(2) == 1 for i in range(0, 1000, 10))


def test_three_way_split() -> None:
    router = TrafficRouter()
    router.set_weights({1: 1, 2: 2, 3: 7})
    assert Counter(router.choose([1, 2, 3]) for _ in range(100)) == {1: 10, 2: 20, 3: 70}


def test_split_skips_versions_that_are_not_ready() -> None:
    router = TrafficRouter()
    router.set_weights({1: 50, 2: 50})
    assert {router.choose([2, 3]) for _ in range(10)} == {2}
    assert router.choose([3]) == 3  # nothing weighted is ready: newest


def test_pin_wins_and_falls_back_when_not_ready() -> None:
    router = TrafficRouter()
    router.set_weights({1: 50, 2: 50})
    router.set_pin(1)
    assert {router.choose([1, 2]) for _ in range(10)} == {1}
    assert Counter(router.choose([2, 3]) for _ in range(4)) == {2: 4}
    router.set_pin(None)
    assert Counter(router.choose([1, 2]) for _ in range(4)) == {1: 2, 2: 2}


def test_api_overrides_config_until_cleared() -> None:
    router = TrafficRouter()
    router.config_policy = TrafficPolicy({1: 1, 2: 1}, pin=None)
    assert router.source == "config"
    router.set_weights({})
    assert router.source == "api" and router.choose([1, 2]) == 2
    router.reset_api()
    assert router.source == "config"


def test_parsing() -> None:
    assert parse_weights("1:90, 2:10") == {1: 90, 2: 10}
    assert parse_weights({"1": 90, "2": 0}) == {1: 90}
    assert policy_from_parameters({CONFIG_WEIGHTS: "1:3,2:1", CONFIG_PIN: "2"}) == TrafficPolicy(
        {1: 3, 2: 1}, 2
    )
    assert policy_from_parameters({}) == TrafficPolicy()
    for bad in ("1=90", "x:1", "1:-1", "1:0", {"1": True}, {"1": 1.5}, ["1"], {"a": 1}):
        with pytest.raises(InvalidInput):
            parse_weights(bad)
    with pytest.raises(InvalidInput):
        policy_from_parameters({CONFIG_PIN: "latest"})
