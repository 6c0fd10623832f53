"""Where a model's instances run: a pure function of its instance groups, the GPUs and the CPUs.

`count` instances go on each GPU a KIND_GPU group lists (Triton's rule); KIND_CPU and KIND_MODEL
groups place `count` instances on the host. `gpu_problems` gives Triton's load errors for groups
asking for GPUs this process does not have.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelport.backends.base import InstancePlacement
from modelport.config.spec import InstanceGroupSpec


def gpu_problems(model: str, groups: Sequence[InstanceGroupSpec], gpus: Sequence[int]) -> list[str]:
    """Why `groups` cannot be placed with these usable GPU indices (empty when they can)."""
    problems: list[str] = []
    for group in groups:
        if group.kind != "KIND_GPU":
            continue
        where = f"instance group {group.name} of model {model}"
        if not group.gpus:
            reason = "no GPUs are available" if not gpus else "specifies no GPUs"
            problems.append(f"{where} has kind KIND_GPU but {reason}")
        for gpu in group.gpus:
            if gpu not in gpus:
                usable = ", ".join(str(g) for g in gpus) or "none"
                problems.append(
                    f"{where} specifies invalid or unsupported gpu id {gpu}. GPUs usable here: {usable}"
                )
    return problems


def place_instances(groups: Sequence[InstanceGroupSpec], cpus: int) -> list[InstancePlacement]:
    """One placement per instance, in group order; the CPU's threads are shared out between them."""
    total = max(sum(g.count * max(len(g.gpus), 1) if g.kind == "KIND_GPU" else g.count for g in groups), 1)
    threads = max(1, cpus // total)
    found: list[InstancePlacement] = []
    for group in groups:
        devices: list[int | None] = list(group.gpus) if group.kind == "KIND_GPU" else [None]
        for device in devices:
            for _ in range(group.count):
                found.append(InstancePlacement(group, len(found), device, threads))
    return found
