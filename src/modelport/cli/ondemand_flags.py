"""modelport's on-demand flags: `--load-on-demand` and `--model-memory-budget=<bytes|size|percent>`.

A budget is a byte count (`500000000`), a size with a unit (`2GiB`, `512MB`, `1.5G`) or a share of
the machine's physical memory (`25%`). Both flags need `--model-control-mode=explicit`: in the other
modes the server, not requests, decides what is loaded.
"""

from __future__ import annotations

import os
import re

from modelport.repository.process_memory import PROCESS, readable

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
    "ti": 1024**4, "tib": 1024**4,
}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory_budget(text: str, physical_bytes: int | None = None) -> int:
    """The budget in bytes; ValueError naming the flag when `text` is not a size or a percentage."""
    value = text.strip()
    if value.endswith("%"):
        try:
            share = float(value[:-1])
        except ValueError:
            raise ValueError(_bad(text)) from None
        if not 0 < share <= 100:
            raise ValueError(f"--model-memory-budget '{text}': a percentage must be above 0 and at most 100")
        total = physical_bytes if physical_bytes is not None else physical_memory()
        return int(total * share / 100)
    match = _SIZE.match(value)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(_bad(text))
    budget = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if budget <= 0:
        raise ValueError(f"--model-memory-budget '{text}' must be more than 0 bytes")
    return budget


def physical_memory() -> int:
    """The machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_on_demand_flags(control_mode: str, load_on_demand: bool, budget: str | None) -> None:
    """ValueError when an on-demand flag is used outside explicit model control."""
    for used, flag in ((load_on_demand, "--load-on-demand"), (budget is not None, "--model-memory-budget")):
        if used and control_mode != "explicit":
            raise ValueError(f"Use of '{flag}' requires setting '--model-control-mode=explicit' as well.")


def check_memory_accounting(mode: str, budget: int | None, rss_readable: bool | None = None) -> None:
    """ValueError when `--model-memory-accounting=process` has no budget to bound or no RSS to read."""
    if mode != PROCESS:
        return
    if budget is None:
        raise ValueError("'--model-memory-accounting=process' requires '--model-memory-budget' as well.")
    if not (readable() if rss_readable is None else rss_readable):
        raise ValueError(
            "'--model-memory-accounting=process' needs the process's resident memory from "
            "/proc/self/statm, which this platform does not provide; use '--model-memory-accounting=files'"
        )


def _bad(text: str) -> str:
    return (
        f"--model-memory-budget '{text}' must be bytes (500000000), a size (2GiB, 512MB) "
        "or a percentage of physical memory (25%)"
    )
