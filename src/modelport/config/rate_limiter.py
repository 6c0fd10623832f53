"""An instance group's `rate_limiter` block: the resources each of its instances holds while it executes,
and its priority among instances competing for them (used only with `--rate-limit=execution_count`)."""

from __future__ import annotations

from dataclasses import dataclass

from modelport.protocol import model_config_pb2


@dataclass(frozen=True, slots=True)
class ResourceNeed:
    """`resources { name count global }`: `count` copies of `name`, on the instance's device unless global."""

    name: str
    count: int
    is_global: bool = False


@dataclass(frozen=True, slots=True)
class RateLimiterSpec:
    resources: tuple[ResourceNeed, ...] = ()
    priority: int = 0  # as Triton: 0 counts as 1; an instance of priority 2 is picked half as often as 1


def rate_limiter_spec(group: model_config_pb2.ModelInstanceGroup) -> RateLimiterSpec | None:
    """The group's rate-limiter settings; None when the config has no `rate_limiter` block.

    A resource named twice in one group counts once, with its last count (as Triton's resource map).
    """
    if not group.HasField("rate_limiter"):
        return None
    block = group.rate_limiter
    last = {r.name: ResourceNeed(r.name, r.count, getattr(r, "global")) for r in block.resources}
    return RateLimiterSpec(resources=tuple(last.values()), priority=block.priority)
