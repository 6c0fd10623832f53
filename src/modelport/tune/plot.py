"""The tuning plot: throughput against p99 latency, one point per measured configuration, as SVG.

Each point is the level that scored the configuration (the best within the budget, else its largest
concurrency); the chosen one is marked and the budget is a dashed line. Plain SVG text, no plotting library.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

from modelport.tune.search import Level, Trial, score

_W, _H, _PAD = 640, 420, 60


def plotted_level(trial: Trial, budget_ms: float | None) -> Level | None:
    """The level a trial is drawn at (None for a trial that could not be measured)."""
    if not trial.levels:
        return None
    found = score(trial, budget_ms)
    wanted = found[1] if found is not None else max(level.concurrency for level in trial.levels)
    return next(level for level in trial.levels if level.concurrency == wanted)


def render_svg(trials: Sequence[Trial], chosen: Trial | None, budget_ms: float | None, title: str) -> str:
    """The whole SVG document."""
    points = [(t, lv) for t in trials if (lv := plotted_level(t, budget_ms)) is not None]
    x_max = max([lv.p99_ms for _, lv in points] + [budget_ms or 0.0, 1e-3]) * 1.1
    y_max = max([lv.throughput for _, lv in points] + [1e-3]) * 1.1

    def x(value: float) -> float:
        return _PAD + value / x_max * (_W - 2 * _PAD)

    def y(value: float) -> float:
        return _H - _PAD - value / y_max * (_H - 2 * _PAD)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{_W}" height="{_H}" fill="white"/>',
        f'<text x="{_W / 2}" y="24" text-anchor="middle" font-size="15">{escape(title)}</text>',
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="black"/>',
        f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" stroke="black"/>',
        f'<text x="{_W / 2}" y="{_H - 15}" text-anchor="middle">p99 latency (ms)</text>',
        f'<text x="18" y="{_H / 2}" text-anchor="middle" transform="rotate(-90 18 {_H / 2})">'
        "throughput (inferences/s)</text>",
        *_ticks(x_max, y_max, x, y),
    ]
    if budget_ms is not None:
        parts.append(
            f'<line class="budget" x1="{x(budget_ms):.1f}" y1="{_PAD}" x2="{x(budget_ms):.1f}" '
            f'y2="{_H - _PAD}" stroke="firebrick" stroke-dasharray="6 4"/>'
        )
        parts.append(
            f'<text x="{x(budget_ms) + 4:.1f}" y="{_PAD + 12}" fill="firebrick">'
            f"budget {budget_ms:g} ms</text>"
        )
    for trial, level in points:
        is_chosen = trial is chosen
        parts.append(
            f'<circle class="trial{" chosen" if is_chosen else ""}" cx="{x(level.p99_ms):.1f}" '
            f'cy="{y(level.throughput):.1f}" r="{7 if is_chosen else 4}" '
            f'fill="{"darkorange" if is_chosen else "steelblue"}" fill-opacity="0.8">'
            f"<title>{escape(trial.knobs.label())} (c={level.concurrency}): {level.throughput:.0f}/s, "
            f"p99 {level.p99_ms:.2f} ms</title></circle>"
        )
        if is_chosen:  # the label points into the plot, away from the budget line on the right
            left = x(level.p99_ms) > _W / 2
            parts.append(
                f'<text x="{x(level.p99_ms) + (-10 if left else 10):.1f}" y="{y(level.throughput) + 20:.1f}" '
                f'text-anchor="{"end" if left else "start"}" fill="darkorange">'
                f"chosen: {escape(trial.knobs.label())}</text>"
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _ticks(x_max: float, y_max: float, x: Callable[[float], float], y: Callable[[float], float]) -> list[str]:
    """Labelled ticks at round steps (1, 2 or 5 times a power of ten) on each axis."""
    marks = []
    for value in _round_steps(x_max):
        marks.append(f'<text x="{x(value):.1f}" y="{_H - _PAD + 16}" text-anchor="middle">{value:g}</text>')
    for value in _round_steps(y_max):
        marks.append(f'<text x="{_PAD - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:g}</text>')
    return marks


def _round_steps(top: float, most: int = 6) -> list[float]:
    """0 and round multiples of one step, up to `top`, at most `most` + 1 of them."""
    step = 10.0 ** math.floor(math.log10(top / most))
    for factor in (1, 2, 5, 10):
        if top / (step * factor) <= most:
            step *= factor
            break
    return [round(i * step, 10) for i in range(int(top / step) + 1)]
