"""What `modelport tune` prints: the table of trials and the verdict on the latency budget."""

from __future__ import annotations

from collections.abc import Sequence

from modelport.tune.search import Level, Trial, score


def trial_rows(
    trials: Sequence[Trial], concurrency: Sequence[int], chosen: Trial | None
) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per trial: its knobs, then throughput and p50/p99 at each concurrency."""
    headers = ["#", "config", *(f"c={c}: infer/s p50/p99 ms" for c in concurrency)]
    rows = []
    for index, trial in enumerate(trials, start=1):
        mark = "*" if trial is chosen else " "
        if trial.error:
            cells = [f"failed: {_short(trial.error)}"] + [""] * (len(concurrency) - 1)
        else:
            by_level = {level.concurrency: level for level in trial.levels}
            cells = [_cell(by_level.get(c)) for c in concurrency]
        rounds = f" (x{trial.rounds})" if trial.rounds > 1 else ""
        rows.append([f"{index}{mark}", trial.knobs.label() + rounds, *cells])
    return headers, rows


def _cell(level: Level | None) -> str:
    if level is None:
        return "-"
    errors = f" ({level.errors} errors)" if level.errors else ""
    return f"{level.throughput:.0f}  {level.p50_ms:.2f}/{level.p99_ms:.2f}{errors}"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def verdict(
    trials: Sequence[Trial], chosen: Trial | None, budget_ms: float | None, measure: str = "in-process"
) -> str:
    """The closing lines: the chosen configuration, where and how it was measured, or why there is none."""
    measured = [t for t in trials if t.levels]
    if not measured:
        return "no configuration could be measured"
    if chosen is None:
        return (
            f"no configuration meets the latency budget of {budget_ms:g} ms at p99 at any concurrency "
            f"({len(measured)} measured); nothing chosen"
        )
    found = score(chosen, budget_ms)
    assert found is not None  # a chosen trial has a score
    throughput, concurrency = found
    level = next(lv for lv in chosen.levels if lv.concurrency == concurrency)
    within = (
        f"within the p99 budget of {budget_ms:g} ms" if budget_ms is not None else "no latency budget given"
    )
    return (
        f"best: {chosen.knobs.label()}  ->  {throughput:.0f} infer/s at concurrency {concurrency}, "
        f"p50 {level.p50_ms:.2f} ms, p99 {level.p99_ms:.2f} ms ({within}; measured {_MEASURED[measure]})"
    )


MEASURES = ("in-process", "http", "grpc")  # the --measure choices
HOW_MEASURED = {
    "in-process": "in-process (no network, no codec)",
    "http": "over HTTP on 127.0.0.1 (tritonclient, binary tensors, a separate client process)",
    "grpc": "over gRPC on 127.0.0.1 (tritonclient, a separate client process)",
}


def knob_legend(measure: str) -> str:
    """The table's legend, with how its latencies were measured (`measure`: a --measure choice)."""
    return (
        "i = instance_group count, t = intra_op_thread_count (- = default), b = max_batch_size, "
        "p = preferred_batch_size, d = max_queue_delay_microseconds; (x2) = mean of 2 rounds; * = chosen; "
        f"latencies measured {HOW_MEASURED[measure]}"
    )


_MEASURED = {"in-process": "in-process", "http": "over HTTP", "grpc": "over gRPC"}
