"""tritonserver's `--rate-limit` and `--rate-limit-resource` flags, parsed with its messages.

`--rate-limit` is `off` or `execution_count` (any case). `--rate-limit-resource` is
`<name>:<count>[:<device>]`; without a device the count applies to every device. A name given twice
for one device keeps the smaller count, as in tritonserver. Names are case-sensitive: tritonserver's
help says otherwise, but 2.51 matches them as given. Where tritonserver reads the leading digits of
a count ("2x" as 2) or takes a negative one (as unlimited), modelport refuses the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from modelport.config.settings import RateLimitResource, ServerSettings

MODES = {"off": "off", "execution_count": "execution_count"}
_INT = re.compile(r"\s*[+-]?[0-9]+")
_INT32 = 2**31


def parse_rate_limit(value: str) -> str:
    """The rate-limit mode; ValueError with tritonserver's message for anything else."""
    mode = MODES.get(value.lower())
    if mode is None:
        raise ValueError("invalid argument for --rate-limit")
    return mode


def parse_rate_limit_resources(entries: Iterable[str]) -> tuple[RateLimitResource, ...]:
    """Every `--rate-limit-resource`, a name and device given twice keeping the smaller count."""
    found: dict[tuple[str, int], RateLimitResource] = {}
    for entry in entries:
        resource = parse_rate_limit_resource(entry)
        key = (resource.name, resource.device)
        if key not in found or resource.count < found[key].count:
            found[key] = resource
    return tuple(found.values())


def parse_rate_limit_resource(entry: str) -> RateLimitResource:
    parts = entry.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(
            "--rate-limit-resource option format is '<resource_name>:<count>:<device>' or "
            f"'<resource_name>:<count>'. Got {entry}"
        )
    count = _int(parts[1])
    device = _int(parts[2]) if len(parts) == 3 else -1
    if count < 0:
        raise ValueError(f"--rate-limit-resource {entry}: the count must be 0 or more")
    if device < -1:
        raise ValueError(f"--rate-limit-resource {entry}: the device must be a device id, or -1 for all")
    return RateLimitResource(parts[0], count, device)


def _int(text: str) -> int:
    """An int32 as tritonserver reads option values, with its messages (the whole text must be one)."""
    if not _INT.fullmatch(text):
        raise ValueError(f"Invalid option value. Got {text}")
    value = int(text)
    if not -_INT32 <= value < _INT32:
        raise ValueError(f"Provided option value is out of bound. Got {text}")
    return value


def rate_limit_rows(settings: ServerSettings) -> list[list[str]]:
    """The startup options table's rows for the rate limiter, as tritonserver prints them."""
    rows = [["rate_limit", "EXEC_COUNT" if settings.rate_limit == "execution_count" else "OFF"]]
    for i, r in enumerate(settings.rate_limit_resources):
        shown = f'{{"name":"{r.name}", "count":{r.count} "device":{r.device}}}'  # sic: Triton's text
        rows.append([f"rate_limit_resource[{i}]", shown])
    return rows
