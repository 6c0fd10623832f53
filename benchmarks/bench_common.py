"""Small helpers shared by the benchmark drivers (stdlib + numpy only).

The drivers are run as scripts (``python benchmarks/raw_ort.py``), so this
module is imported from the script directory, not from the modelport package.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
from collections.abc import Iterable, Sequence

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_int_list(text: str) -> list[int]:
    """'1,2, 8' -> [1, 2, 8]; rejects empty items and values < 1."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        value = int(part)
        if value < 1:
            raise ValueError(f"expected positive integers, got {value}")
        out.append(value)
    if not out:
        raise ValueError(f"empty list: {text!r}")
    return out


def parse_shape_overrides(items: Iterable[str] | None) -> dict[str, list[int]]:
    """['x:3,224,224', 'mask:7'] -> {'x': [3, 224, 224], 'mask': [7]}."""
    shapes: dict[str, list[int]] = {}
    for item in items or ():
        name, sep, dims = item.rpartition(":")
        if not sep or not name:
            raise ValueError(f"--shape expects NAME:D1,D2,..., got {item!r}")
        shapes[name] = [int(d) for d in dims.split(",") if d.strip()]
    return shapes


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100) of an unsorted sequence."""
    if not values:
        return None
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


def median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(statistics.median(vals)) if vals else None


def summarize(values: Iterable[float | None]) -> dict:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "runs": vals}


# ----------------------------------------------------------------- /proc CPU
def _read_stat(pid: int) -> tuple[int, float] | None:
    """(ppid, utime+stime seconds) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # comm (field 2) may contain spaces/parentheses: split after the last ')'.
    rest = raw[raw.rfind(")") + 2 :].split()
    ppid = int(rest[1])
    utime, stime = int(rest[11]), int(rest[12])
    return ppid, (utime + stime) / CLK_TCK


def process_tree_cpu_seconds(root_pid: int) -> float | None:
    """User+system CPU seconds of ``root_pid`` and its live descendants.

    Reads /proc; returns None where /proc is unavailable or the process is
    gone. CPU of descendants that already exited and were reaped is folded by
    the kernel into the parent's cutime/cstime, which is not counted here (the
    server's worker processes are expected to live for the whole run).
    """
    root = _read_stat(root_pid)
    if root is None:
        return None
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return root[1]
    stats: dict[int, float] = {root_pid: root[1]}
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == root_pid:
            continue
        st = _read_stat(pid)
        if st is None:
            continue
        children.setdefault(st[0], []).append(pid)
        stats[pid] = st[1]
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0.0)
        todo.extend(children.get(pid, ()))
    return total


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def machine_info() -> dict:
    info: dict = {"cpu_count": os.cpu_count()}
    with contextlib.suppress(AttributeError, OSError):
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError):
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return info


def write_json(path: str | None, payload: dict) -> None:
    if not path:
        return
    tmp = f"{path}.part"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)
