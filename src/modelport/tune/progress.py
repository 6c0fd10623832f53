"""The progress line `modelport tune` writes to stderr while it searches: `[####......] 4/10 trials`."""

from __future__ import annotations

from typing import TextIO

from modelport.tune.search import SearchPlan, score

_WIDTH = 20


def progress_line(done: int, total: int, seconds_left: float, best: str) -> str:
    """One line: a bar, trials done of the most expected, time left, the best so far."""
    total = max(total, done, 1)
    filled = round(_WIDTH * done / total)
    minutes, seconds = divmod(int(seconds_left), 60)
    bar = "#" * filled + "." * (_WIDTH - filled)
    return f"[{bar}] {done}/{total} trials  {minutes}:{seconds:02d} left  {best}"


class ProgressBar:
    """Rewrites one line on a terminal; elsewhere (a log, a pipe) writes one line per trial."""

    def __init__(self, stream: TextIO, trial_seconds: float) -> None:
        self._stream = stream
        self._trial_seconds = max(trial_seconds, 0.1)
        self._tty = stream.isatty()

    def __call__(self, plan: SearchPlan, seconds_left: float) -> None:
        done = len(plan.trials)
        fits = int(seconds_left // self._trial_seconds)  # the time limit caps what the plan may still run
        total = done + min(plan.upper_bound(), fits)
        found = [s for s in (score(t, plan.budget_ms) for t in plan.trials) if s is not None]
        best = f"best {max(found)[0]:.0f} infer/s" if found else "nothing within the budget yet"
        line = progress_line(done, total, seconds_left, best)
        self._stream.write(f"\r{line}\x1b[K" if self._tty else f"{line}\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
