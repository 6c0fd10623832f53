"""A model's `response_cache` settings: whether its responses are cached, and for how long.

Triton refuses the cache for sequence-batched and decoupled models when the config is validated;
the messages here are Triton's. The time to live is modelport's own, a model config parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelport.errors import InvalidInput
from modelport.protocol import ModelConfigProto

TTL_PARAMETER = "response_cache_ttl_seconds"


@dataclass(frozen=True, slots=True)
class ResponseCacheSpec:
    """`response_cache { enable: true }`: identical requests are answered from the server's cache."""

    ttl_ns: int | None = None  # entries older than this are misses; None: kept until evicted


def response_cache_spec(config: ModelConfigProto) -> ResponseCacheSpec | None:
    """The model's cache settings (None when it does not enable the cache); InvalidInput when it
    enables it where Triton refuses it, or gives a malformed time to live."""
    if not config.response_cache.enable:
        return None
    if config.HasField("sequence_batching"):
        raise InvalidInput(
            f"Response Cache does not currently support model {config.name} with sequence batching "
            "scheduler. Please disable the response cache."
        )
    if config.model_transaction_policy.decoupled:
        raise InvalidInput(
            f"Response Cache does not currently support model {config.name} with 'decoupled' "
            "transaction policy. Please disable the response cache."
        )
    return ResponseCacheSpec(ttl_ns=_ttl_ns(config))


def unused_ttl(config: ModelConfigProto) -> bool:
    """True when the config sets a time to live but does not enable the cache (worth a warning)."""
    return TTL_PARAMETER in config.parameters and not config.response_cache.enable


def _ttl_ns(config: ModelConfigProto) -> int | None:
    if TTL_PARAMETER not in config.parameters:
        return None
    text = config.parameters[TTL_PARAMETER].string_value.strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInput(
            f"model '{config.name}': parameter '{TTL_PARAMETER}' must be a positive number of seconds, "
            f"got '{text}'"
        )
    return max(1, round(seconds * 1e9))
