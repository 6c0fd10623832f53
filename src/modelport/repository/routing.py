"""Which READY version serves a request that names no version: newest, weighted split, or a pin.

Beyond Triton. A model may split unversioned traffic between versions by weight (A/B tests,
canaries) or pin it to one version (instant rollback). The policy comes from the model config's
`parameters` (keys CONFIG_WEIGHTS / CONFIG_PIN) or from the traffic API; an API setting wins over
the config until it is cleared. Requests that name a version are never rerouted.

Weighted choice is smooth weighted round-robin: over any window of sum(weights) requests each
version gets exactly its share, interleaved (90/10 gives nine requests to one version, then one to
the other, spread evenly), so a split is exact even over a few hundred requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelport.errors import InvalidInput

CONFIG_WEIGHTS = "modelport.traffic.weights"  # e.g. "1:90,2:10"
CONFIG_PIN = "modelport.traffic.pin"  # e.g. "1"


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    """Weights by version (empty: no split) and an optional pinned version."""

    weights: Mapping[int, int] = field(default_factory=dict)
    pin: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": {str(v): w for v, w in sorted(self.weights.items())},
            "pin": None if self.pin is None else str(self.pin),
        }


def parse_weights(value: object) -> dict[int, int]:
    """Weights from the API's {"1": 90, "2": 10} or the config's "1:90,2:10"."""
    if isinstance(value, str):
        pairs: list[tuple[object, object]] = []
        for item in (p.strip() for p in value.split(",")):
            if not item:
                continue
            version, sep, weight = item.partition(":")
            if not sep:
                raise InvalidInput(f"traffic weight '{item}' must look like <version>:<weight>")
            pairs.append((version.strip(), weight.strip()))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        raise InvalidInput('traffic \'weights\' must be an object such as {"1": 90, "2": 10}')
    weights: dict[int, int] = {}
    for key, raw in pairs:
        number = parse_version_number(key, "traffic weights")
        amount = _weight(number, raw)
        if amount:
            weights[number] = amount
    if pairs and not weights:
        raise InvalidInput("traffic weights must give at least one version a positive weight")
    return weights


def _weight(version: int, raw: object) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    if isinstance(raw, float) and raw.is_integer() and raw >= 0:
        return int(raw)
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw.strip())
    raise InvalidInput(f"traffic weight of version {version} must be a non-negative integer")


def parse_version_number(value: object, what: str) -> int:
    """A version number given as a string or an integer."""
    if isinstance(value, bool):
        raise InvalidInput(f"{what}: '{value}' is not a version number")
    text = str(value).strip()
    if not text.isdigit():
        raise InvalidInput(f"{what}: '{value}' is not a version number")
    return int(text)


def policy_from_parameters(parameters: Mapping[str, str]) -> TrafficPolicy:
    """The traffic policy a model config's `parameters` ask for (INVALID_ARG if malformed)."""
    weights_text = parameters.get(CONFIG_WEIGHTS, "")
    pin_text = parameters.get(CONFIG_PIN, "").strip()
    weights = parse_weights(weights_text) if weights_text.strip() else {}
    pin = parse_version_number(pin_text, f"parameter '{CONFIG_PIN}'") if pin_text else None
    return TrafficPolicy(weights, pin)


class TrafficRouter:
    """Per-model routing state: the config policy, an optional API override, and the WRR counters."""

    def __init__(self) -> None:
        self.config_policy = TrafficPolicy()
        self.api_weights: dict[int, int] | None = None  # None: follow the config
        self.api_pin: int | None = None  # None: follow the config
        self._current: dict[int, int] = {}

    @property
    def policy(self) -> TrafficPolicy:
        """The effective policy: API settings over the config's."""
        weights = self.config_policy.weights if self.api_weights is None else self.api_weights
        pin = self.api_pin if self.api_pin is not None else self.config_policy.pin
        return TrafficPolicy(dict(weights), pin)

    @property
    def source(self) -> str:
        if self.api_weights is not None or self.api_pin is not None:
            return "api"
        if self.config_policy.weights or self.config_policy.pin is not None:
            return "config"
        return "default"

    def reset_api(self) -> None:
        self.api_weights, self.api_pin = None, None
        self._current.clear()

    def set_weights(self, weights: dict[int, int] | None) -> None:
        self.api_weights = weights
        self._current.clear()

    def set_pin(self, pin: int | None) -> None:
        self.api_pin = pin

    def choose(self, ready: Sequence[int]) -> int | None:
        """The version for the next unversioned request among `ready` (ascending); None if empty.

        A pin or weights naming versions that are not READY fall back: a pin to the split, a split
        to the newest READY version.
        """
        if not ready:
            return None
        if self.source == "default":
            return ready[-1]  # no split and no pin: the newest
        policy = self.policy
        if policy.pin is not None and policy.pin in ready:
            return policy.pin
        live = {v: w for v, w in policy.weights.items() if v in ready and w > 0}
        if not live:
            return ready[-1]
        if len(live) == 1:
            return next(iter(live))
        return self._weighted(live)

    def peek(self, ready: Sequence[int]) -> int | None:
        """The version that answers questions about the model (metadata, config): pinned, else newest."""
        if not ready:
            return None
        pin = self.policy.pin
        return pin if pin is not None and pin in ready else ready[-1]

    def _weighted(self, weights: dict[int, int]) -> int:
        total = sum(weights.values())
        for version in list(self._current):
            if version not in weights:
                del self._current[version]
        best = -1
        for version, weight in weights.items():
            self._current[version] = self._current.get(version, 0) + weight
            if best < 0 or self._current[version] > self._current[best]:
                best = version
        self._current[best] -= total
        return best
