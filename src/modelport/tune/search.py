"""The tuning search, as pure logic: the knobs, the candidates, pruning, and the best choice.

The search runs in two stages. First the instance layout: for each intra-op thread count, instance
counts are tried in increasing order at the model's default batching, and a branch stops as soon as
one more instance no longer raises the score (or oversubscribes the CPUs). Then, from the best layout,
each batching knob in turn (max_batch_size, max_queue_delay_microseconds, preferred sizes) walks away
from its current value in both directions and stops at the first step that does not raise the score.
Last, the best few are measured once more (averaged with their first round), so that one lucky
window on a busy machine does not decide alone. Nothing here measures or sleeps: `SearchPlan` hands
out configurations and is told their results.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

# A change must beat the best so far by this fraction to count: smaller gains are measurement noise.
MIN_GAIN = 0.03
QUEUE_DELAYS_US = (0, 100, 500, 2000)
CONFIRM_TOP = 3  # how many of the best configurations get a second round
# The model's own configuration is kept unless another beats it by this fraction: in-process gains
# smaller than this do not survive the trip through a frontend on a shared machine.
KEEP_OWN_GAIN = 0.10
_MAX_BATCH_CAP = 64


@dataclass(frozen=True, slots=True)
class Knobs:
    """One candidate configuration. threads 0: the server's default (the CPUs shared between instances)."""

    instances: int
    threads: int = 0
    max_batch_size: int = 0
    preferred: tuple[int, ...] = ()
    queue_delay_us: int = 0

    def label(self) -> str:
        """A short readable name: `i2 t1 b8 p4,8 d100`."""
        parts = [f"i{self.instances}", f"t{self.threads}" if self.threads else "t-"]
        if self.max_batch_size:
            parts.append(f"b{self.max_batch_size}")
            parts.append("p" + ",".join(map(str, self.preferred)) if self.preferred else "p-")
            parts.append(f"d{self.queue_delay_us}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Level:
    """What one concurrency level measured."""

    concurrency: int
    throughput: float  # inferences per second
    p50_ms: float
    p99_ms: float
    errors: int = 0


@dataclass(frozen=True, slots=True)
class Trial:
    """One measured configuration; `error` says why it could not be measured (then no levels)."""

    knobs: Knobs
    levels: tuple[Level, ...] = ()
    error: str = ""
    rounds: int = 1  # measurements averaged into `levels`


def _mean(average: float, value: float, rounds: int) -> float:
    """The mean of `rounds` values averaging `average`, and `value`."""
    return (average * rounds + value) / (rounds + 1)


def merge(old: Trial, new: Trial) -> Trial:
    """A configuration measured again: each level becomes the mean of its rounds (errors add up).

    A round that failed makes the whole configuration failed: it is not reliable.
    """
    if new.error or not old.levels:
        return Trial(old.knobs, (), new.error or old.error, old.rounds + 1)
    by_level = {level.concurrency: level for level in new.levels}
    n = old.rounds
    levels = []
    for level in old.levels:
        again = by_level.get(level.concurrency, level)
        levels.append(Level(
            level.concurrency, _mean(level.throughput, again.throughput, n),
            _mean(level.p50_ms, again.p50_ms, n), _mean(level.p99_ms, again.p99_ms, n),
            level.errors + again.errors,
        ))  # fmt: skip
    return Trial(old.knobs, tuple(levels), "", old.rounds + 1)


@dataclass(frozen=True, slots=True)
class Space:
    """What may vary for one model."""

    instance_counts: tuple[int, ...]
    thread_counts: tuple[int, ...]  # (0,) where the backend has no thread knob
    base: Knobs  # the model's own batching: the starting point of the second stage
    cpus: int
    max_concurrency: int
    min_batch_size: int = 1  # ensembles using the model need at least this max_batch_size

    @property
    def batches(self) -> bool:
        return self.base.max_batch_size > 0


def build_space(
    *,
    cpus: int,
    max_batch_size: int,
    preferred: Sequence[int],
    queue_delay_us: int,
    max_concurrency: int,
    thread_knob: bool,
    min_batch_size: int = 1,
) -> Space:
    """The search space of a model: powers of two up to the CPU count for instances and threads."""
    powers = _powers_of_two(max(1, cpus))
    base = Knobs(
        1,
        0,
        max_batch_size,
        tuple(preferred) if max_batch_size else (),
        queue_delay_us if max_batch_size else 0,
    )
    threads = tuple(sorted(powers, reverse=True)) if thread_knob else (0,)
    return Space(powers, threads, base, max(1, cpus), max(1, max_concurrency), max(1, min_batch_size))


def _powers_of_two(limit: int) -> tuple[int, ...]:
    values = [1]
    while values[-1] * 2 <= limit:
        values.append(values[-1] * 2)
    if values[-1] != limit:
        values.append(limit)
    return tuple(values)


def score(trial: Trial, budget_ms: float | None) -> tuple[float, int] | None:
    """(throughput, concurrency) of the best level whose p99 meets the budget; None when none does.

    Among levels within the budget the highest throughput wins; on a tie, the larger concurrency.
    A level with errors never counts.
    """
    best: tuple[float, int] | None = None
    for level in trial.levels:
        if level.errors or (budget_ms is not None and level.p99_ms > budget_ms):
            continue
        candidate = (level.throughput, level.concurrency)
        if best is None or candidate > best:
            best = candidate
    return best


def choose_best(
    trials: Iterable[Trial],
    budget_ms: float | None,
    own: Knobs | None = None,
    keep_own_gain: float = KEEP_OWN_GAIN,
) -> Trial | None:
    """The trial with the highest score under the budget (the earliest among equals); None: none meets it.

    When `own` (the model's configuration) meets the budget, it stays the choice unless the best beats
    it by more than `keep_own_gain`.
    """
    measured = list(trials)
    best: Trial | None = None
    best_score: tuple[float, int] | None = None
    for trial in measured:
        found = score(trial, budget_ms)
        if found is not None and (best_score is None or found[0] > best_score[0]):
            best, best_score = trial, found
    mine = next((trial for trial in measured if trial.knobs == own), None)
    if mine is not None and not improves(best_score, score(mine, budget_ms), keep_own_gain):
        return mine if score(mine, budget_ms) is not None else best
    return best


def improves(
    new: tuple[float, int] | None, old: tuple[float, int] | None, min_gain: float = MIN_GAIN
) -> bool:
    """Whether `new` beats `old` by more than noise; anything beats nothing, nothing beats anything."""
    if new is None:
        return False
    return old is None or new[0] > old[0] * (1.0 + min_gain)


def batching_candidates(space: Space, current: Knobs, knob: str) -> tuple[list[Knobs], list[Knobs]]:
    """The values of one batching knob above and below `current`'s, nearest first."""
    if knob == "max_batch_size":
        top = max(space.base.max_batch_size, min(_MAX_BATCH_CAP, space.max_concurrency))
        values: Sequence[int] = sorted(
            v for v in {*_powers_of_two(top), space.base.max_batch_size} if v >= space.min_batch_size
        )
        options = [_with_batch_size(current, v) for v in values]
    elif knob == "queue_delay_us":
        values = sorted({*QUEUE_DELAYS_US, space.base.queue_delay_us})
        options = [replace(current, queue_delay_us=v) for v in values]
    else:
        size = current.max_batch_size
        shapes = [(), *([(size // 2, size)] if size >= 4 else []), (size,)]
        options = [replace(current, preferred=p) for p in dict.fromkeys(shapes)]
    here = next((i for i, o in enumerate(options) if o == current), None)
    if here is None:  # current's value is not on the list: try them all, upwards
        return options, []
    return options[here + 1 :], list(reversed(options[:here]))


def _with_batch_size(knobs: Knobs, size: int) -> Knobs:
    """`knobs` with another max_batch_size; preferred sizes above it are dropped."""
    return replace(knobs, max_batch_size=size, preferred=tuple(p for p in knobs.preferred if p <= size))


@dataclass(slots=True)
class SearchPlan:
    """Hands out the next configuration to measure and prunes with each result it is given.

    Use: `while (knobs := plan.next()) is not None: plan.record(measure(knobs))`.
    """

    space: Space
    budget_ms: float | None
    first: Knobs | None = None  # measured before everything else: the model's own configuration
    trials: list[Trial] = field(default_factory=list)
    _branches: list[list[Knobs]] = field(default_factory=list)
    _stage: int = 1
    _knobs_left: list[str] = field(default_factory=lambda: ["max_batch_size", "queue_delay_us", "preferred"])
    _pending: Knobs | None = None
    _branch_best: tuple[float, int] | None = None
    _confirm: list[Knobs] | None = None  # the second rounds, once the search proper is over

    def __post_init__(self) -> None:
        start = self.space.base
        self._branches = [
            [
                replace(start, instances=n, threads=t)
                for n in self.space.instance_counts
                if t == 0 or n * t <= 2 * self.space.cpus
            ]
            for t in self.space.thread_counts
        ]
        self._branches = [b for b in self._branches if b]
        if self.first is not None:
            self._branches.insert(0, [self.first])

    def next(self) -> Knobs | None:
        """The next configuration to measure, or None when the search is over."""
        while self._pending is None:
            if self._advance():
                continue
            if self._confirm is None:
                ranked = sorted(
                    ((s, i) for i, t in enumerate(self.trials) if (s := score(t, self.budget_ms))),
                    reverse=True,
                )
                self._confirm = [self.trials[i].knobs for _, i in ranked[:CONFIRM_TOP]]
            if not self._confirm:
                return None
            self._pending = self._confirm.pop(0)
        return self._pending

    def record(self, trial: Trial) -> None:
        """The measurement of the configuration `next` returned: prune the branch it belongs to."""
        self._pending = None
        again = next((i for i, t in enumerate(self.trials) if t.knobs == trial.knobs), None)
        if again is not None:  # a second round: no pruning, the search is over
            self.trials[again] = merge(self.trials[again], trial)
            return
        self.trials.append(trial)
        found = score(trial, self.budget_ms)
        if improves(found, self._branch_best):
            self._branch_best = found
        elif self._branches:
            self._branches[0].clear()  # stop this direction: going further no longer pays

    def upper_bound(self) -> int:
        """At most how many more trials this plan can hand out (for a progress bar)."""
        left = sum(len(b) for b in self._branches)
        left += CONFIRM_TOP if self._confirm is None else len(self._confirm)
        if self._stage == 1 and self.space.batches:
            left += 3 * len(QUEUE_DELAYS_US) + _MAX_BATCH_CAP.bit_length() + 3
        return left

    def _start_score(self) -> tuple[float, int] | None:
        """A new stage-2 direction starts from the best so far; a new stage-1 branch from nothing."""
        if self._stage == 1:
            return None
        best = choose_best(self.trials, self.budget_ms)
        return score(best, self.budget_ms) if best is not None else None

    def _advance(self) -> bool:
        """Set `_pending` to the next untried configuration; False when nothing is left."""
        tried = {t.knobs: t for t in self.trials}
        while True:
            while self._branches and not self._branches[0]:
                self._branches.pop(0)
                self._branch_best = self._start_score()
            if not self._branches:
                return self._next_knob()
            candidate = self._branches[0].pop(0)
            if candidate not in tried:
                self._pending = candidate
                return True
            # Measured before (the model's own config): its result counts as this step of the branch.
            found = score(tried[candidate], self.budget_ms)
            if improves(found, self._branch_best):
                self._branch_best = found
            else:
                self._branches[0].clear()

    def _next_knob(self) -> bool:
        """Open the next batching knob's two directions around the best configuration so far."""
        if not self.space.batches:
            return False
        self._stage = 2
        best = choose_best(self.trials, self.budget_ms)
        while self._knobs_left:
            knob = self._knobs_left.pop(0)
            start = best.knobs if best is not None else self.space.base
            up, down = batching_candidates(self.space, start, knob)
            self._branches = [b for b in (up, down) if b]
            if self._branches:
                self._branch_best = self._start_score()
                return True
        return False
