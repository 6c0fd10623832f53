"""tritonserver's GPU metric flags: `--allow-gpu-metrics` and `--metrics-interval-ms`."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_gpu_metric_flags(serve: argparse.ArgumentParser, boolean: Callable[[str], bool]) -> None:
    """The flags, with tritonserver's defaults (GPU metrics on, read every 2000 ms)."""
    serve.add_argument("--allow-gpu-metrics", type=boolean, nargs="?", const=True, default=True,
                       help="report nv_gpu_* and nv_energy_consumption per GPU (through NVML, where present)")
    serve.add_argument("--metrics-interval-ms", type=float, default=2000.0, metavar="<float>",
                       help="how often GPU metrics are read (a scrape re-reads them when older)")  # fmt: skip


def gpu_metric_settings(args: argparse.Namespace) -> dict[str, object]:
    """ServerSettings fields from the flags; SystemExit for an interval that is not positive."""
    if not args.metrics_interval_ms > 0:
        raise SystemExit(f"--metrics-interval-ms must be positive, got {args.metrics_interval_ms:g}")
    return {"allow_gpu_metrics": args.allow_gpu_metrics, "metrics_interval_ms": args.metrics_interval_ms}
