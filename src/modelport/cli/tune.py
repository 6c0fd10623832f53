"""`modelport tune MODEL --model-repository R`: search a model's instance layout and batching.

Prints a table of every configuration tried and the best one within the latency budget; `--write`
saves it as `<model>/configs/tuned.pbtxt` (served with `--model-config-name tuned`), with a plot of
throughput against p99 beside it. The model's config.pbtxt is never written.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from modelport.cli.tables import render_table
from modelport.errors import InvalidInput, ModelportError
from modelport.tune.configs import model_folder, tuned_path, write_tuned
from modelport.tune.plot import render_svg
from modelport.tune.progress import ProgressBar
from modelport.tune.report import MEASURES, knob_legend, trial_rows, verdict
from modelport.tune.runner import TuneOptions, TuneOutcome, run_tuning


def add_tune_parser(commands: Any) -> None:
    tune = commands.add_parser(
        "tune",
        help="find the instance count, threads and batching that serve a model fastest within a p99 budget",
        description="Loads the model in this process and measures configurations with a closed-loop load "
        "(in-process, or with --measure over HTTP/gRPC through a frontend on 127.0.0.1); "
        "the search prunes (instances x threads first, then each batching knob around the best).",
    )
    tune.add_argument("model", help="model name (a folder of the repository)")
    tune.add_argument("--model-repository", required=True, type=Path, help="model repository folder")
    tune.add_argument(
        "--latency-budget-ms",
        type=_positive,
        default=None,
        help="p99 latency a configuration must stay within (default: none)",
    )
    tune.add_argument(
        "--concurrency",
        type=_levels,
        default=(1, 4, 16),
        metavar="N,N,...",
        help="requests in flight to measure at (default 1,4,16)",
    )
    tune.add_argument(
        "--max-minutes", type=_positive, default=3.0, help="time limit of the whole search (default 3)"
    )
    tune.add_argument(
        "--trial-seconds",
        type=_positive,
        default=2.0,
        help="measured seconds per concurrency level of each trial (default 2)",
    )
    tune.add_argument(
        "--warmup-seconds",
        type=_non_negative,
        default=0.5,
        help="unmeasured seconds before each level (default 0.5)",
    )
    tune.add_argument(
        "--keep-own-gain",
        type=_non_negative,
        default=10.0,
        metavar="PERCENT",
        help="keep the model's own configuration unless another is this much faster (default 10)",
    )
    tune.add_argument(
        "--measure",
        choices=MEASURES,
        default="in-process",
        help="how each configuration is measured: calling the model in this process (default), or over "
        "HTTP / gRPC through the frontend this process serves on 127.0.0.1, from a separate client process",
    )
    tune.add_argument(
        "--write",
        action="store_true",
        help="save the chosen configuration as <model>/configs/tuned.pbtxt and the plot beside it",
    )
    tune.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="where to save the SVG plot (default: with --write, <model>/configs/tuned.svg)",
    )
    tune.add_argument("--log-verbose", type=int, default=0, help="1: show the server's log while tuning")


def run_tune(args: argparse.Namespace) -> int:
    # Warnings (a config field modelport ignores) still show; load chatter only with --log-verbose.
    logging.basicConfig(level=logging.INFO if args.log_verbose else logging.WARNING, stream=sys.stderr)
    try:
        folder = model_folder(args.model_repository, args.model)
        if args.write:
            tuned_path(folder)  # refuse before spending minutes
    except InvalidInput as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    options = TuneOptions(
        args.model,
        args.model_repository,
        args.concurrency,
        args.latency_budget_ms,
        args.max_minutes,
        args.trial_seconds,
        args.warmup_seconds,
        keep_own_gain=args.keep_own_gain / 100.0,
        measure=args.measure,
    )
    bar = ProgressBar(sys.stderr, len(options.concurrency) * (options.trial_seconds + options.warmup_seconds))
    try:
        outcome = _run(run_tuning(options, bar))
    except ModelportError as exc:
        bar.close()
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    bar.close()
    _print(outcome, options)
    return _save(outcome, options, folder, args)


def _run(search: Coroutine[Any, Any, TuneOutcome]) -> TuneOutcome:
    """On uvloop where it is installed, as `serve` runs: the scheduling measured is the server's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(search)
    return uvloop.run(search)


def _print(outcome: TuneOutcome, options: TuneOptions) -> None:
    headers, rows = trial_rows(outcome.trials, options.concurrency, outcome.best)
    print(render_table(headers, rows))
    print(knob_legend(options.measure))
    stopped = " (time limit reached; the search stopped early)" if outcome.stopped_early else ""
    print(f"{len(outcome.trials)} configurations tried in {outcome.elapsed_s:.0f} s{stopped}")
    print(verdict(outcome.trials, outcome.best, options.budget_ms, options.measure))
    if outcome.kept_own and len(outcome.trials) > 1:
        print(
            f"the model's own configuration is kept: no other beat it by more than "
            f"{options.keep_own_gain:.0%} (--keep-own-gain)"
        )


def _save(outcome: TuneOutcome, options: TuneOptions, folder: Path, args: argparse.Namespace) -> int:
    plot_path = args.plot or (tuned_path(folder).with_suffix(".svg") if args.write else None)
    if plot_path is not None:
        title = f"modelport tune {options.model}: {len(outcome.trials)} configurations"
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        plot_path.write_text(
            render_svg(outcome.trials, outcome.best, options.budget_ms, title), encoding="utf-8"
        )
        print(f"plot: {plot_path}")
    if not args.write:
        return 0
    if outcome.best is None:
        print("nothing written: no configuration met the budget", file=sys.stderr)
        return 1
    header = (
        f"Written by `modelport tune {options.model}`: "
        f"{verdict(outcome.trials, outcome.best, options.budget_ms, options.measure)}"
        "\nServe it with --model-config-name tuned."
    )
    path = write_tuned(folder, outcome.config_of(outcome.best), header)
    print(f"wrote {path} (serve with --model-config-name tuned)")
    return 0


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"concurrency levels must be at least 1, got '{text}'")
    return levels
