"""The tuning search on synthetic measurements: candidates, pruning, and the best choice under a budget."""

from __future__ import annotations

from collections.abc import Callable

from modelport.tune.search import (
    Knobs,
    Level,
    SearchPlan,
    Space,
    Trial,
    batching_candidates,
    build_space,
    choose_best,
    score,
)

Model = Callable[[Knobs, int], tuple[float, float]]  # (knobs, concurrency) -> (throughput, p99 ms)


def run(plan: SearchPlan, model: Model, levels: tuple[int, ...] = (1, 4, 16)) -> list[Trial]:
    """Drive the plan to its end with a synthetic model, as the runner does with real measurements."""
    while (knobs := plan.next()) is not None:
        measured = tuple(Level(c, *_as_level(model(knobs, c))) for c in levels)
        plan.record(Trial(knobs, measured))
    return plan.trials


def _as_level(result: tuple[float, float]) -> tuple[float, float, float]:
    throughput, p99 = result
    return throughput, p99 / 2, p99


def batching_space(cpus: int = 8) -> Space:
    return build_space(cpus=cpus, max_batch_size=8, preferred=(), queue_delay_us=0, max_concurrency=16,
                       thread_knob=True)


def peak_at_two_instances(knobs: Knobs, concurrency: int) -> tuple[float, float]:
    """Throughput best with 2 instances and 4 threads; batching up to 16 helps; queue delay costs."""
    layout = {1: 100.0, 2: 180.0, 4: 170.0, 8: 120.0}[knobs.instances] * (1.2 if knobs.threads == 4 else 1.0)
    batching = 1.0 + min(knobs.max_batch_size, 16) / 32 - knobs.queue_delay_us / 10_000
    throughput = layout * batching * min(concurrency, 4)
    return throughput, concurrency * 1000.0 / throughput * 2


def test_space_spans_powers_of_two_up_to_the_cpus() -> None:
    space = build_space(cpus=6, max_batch_size=0, preferred=(4,), queue_delay_us=100, max_concurrency=16,
                        thread_knob=True)
    assert space.instance_counts == (1, 2, 4, 6)
    assert space.thread_counts == (6, 4, 2, 1)
    assert not space.batches
    assert space.base == Knobs(1)  # a model that does not batch has no batching knobs at all
    no_threads = build_space(cpus=6, max_batch_size=8, preferred=(), queue_delay_us=0, max_concurrency=4,
                             thread_knob=False)
    assert no_threads.thread_counts == (0,)


def test_score_takes_the_best_level_within_the_budget() -> None:
    trial = Trial(Knobs(1), (Level(1, 100, 1, 2), Level(4, 300, 3, 9), Level(16, 350, 20, 40)))
    assert score(trial, None) == (350, 16)
    assert score(trial, 10.0) == (300, 4)
    assert score(trial, 1.0) is None
    failing = Trial(Knobs(2), (Level(16, 900, 1, 2, errors=3),))
    assert score(failing, None) is None  # a level with errors never counts


def test_choose_best_is_the_fastest_within_the_budget_or_none() -> None:
    fast_but_slow_tail = Trial(Knobs(4), (Level(16, 1000, 10, 50),))
    steady = Trial(Knobs(2), (Level(16, 700, 5, 8),))
    unmeasured = Trial(Knobs(8), error="load failed")
    assert choose_best([fast_but_slow_tail, steady, unmeasured], None) is fast_but_slow_tail
    assert choose_best([fast_but_slow_tail, steady, unmeasured], 10.0) is steady
    assert choose_best([fast_but_slow_tail, steady], 1.0) is None


def test_the_models_own_configuration_is_kept_unless_clearly_beaten() -> None:
    own = Trial(Knobs(1, 2), (Level(16, 1000, 5, 8),))
    slightly_faster = Trial(Knobs(2, 1), (Level(16, 1080, 5, 8),))
    clearly_faster = Trial(Knobs(4, 1), (Level(16, 1150, 5, 8),))
    assert choose_best([own, slightly_faster], None, own=own.knobs) is own
    assert choose_best([own, slightly_faster], None, own=own.knobs, keep_own_gain=0.05) is slightly_faster
    assert choose_best([own, slightly_faster, clearly_faster], None, own=own.knobs) is clearly_faster
    # Over the budget, the own configuration is no choice at all: the best within it wins however small.
    own_too_slow = Trial(Knobs(1, 2), (Level(16, 1000, 5, 80),))
    assert choose_best([own_too_slow, slightly_faster], 10.0, own=own.knobs) is slightly_faster
    assert choose_best([own_too_slow], 10.0, own=own.knobs) is None


def test_batching_candidates_walk_away_from_the_current_value_nearest_first() -> None:
    space = batching_space()
    up, down = batching_candidates(space, Knobs(2, 4, 8, (8,), 0), "max_batch_size")
    assert [k.max_batch_size for k in up] == [16]
    assert [k.max_batch_size for k in down] == [4, 2, 1]
    assert all(p <= k.max_batch_size for k in down for p in k.preferred)  # sizes above the max are dropped
    up, down = batching_candidates(space, Knobs(2, 4, 8, (), 100), "queue_delay_us")
    assert [k.queue_delay_us for k in up] == [500, 2000]
    assert [k.queue_delay_us for k in down] == [0]
    up, down = batching_candidates(space, Knobs(2, 4, 8, (), 0), "preferred")
    assert [k.preferred for k in up] == [(4, 8), (8,)] and down == []


def test_search_prunes_and_finds_the_best_layout_then_batching() -> None:
    space = batching_space()
    plan = SearchPlan(space, budget_ms=None)
    trials = run(plan, peak_at_two_instances)
    tried = [t.knobs for t in trials]
    assert len(tried) == len(set(tried))  # nothing is measured twice
    full_grid = len(space.instance_counts) * len(space.thread_counts) * 5 * len((0, 100, 500, 2000)) * 3
    assert len(tried) < full_grid / 10
    # each thread branch stopped after the instance count that no longer paid: 8 instances never ran
    # with more than one thread (4 beat 2 only by noise, so the branch ended there)
    assert not [k for k in tried if k.instances == 8 and k.max_batch_size == 8 and k.threads > 1]
    best = choose_best(trials, None)
    assert best is not None
    assert (best.knobs.instances, best.knobs.threads, best.knobs.max_batch_size) == (2, 4, 16)
    assert best.knobs.queue_delay_us == 0
    # the queue-delay direction stopped at its first step, which cost throughput
    assert [k.queue_delay_us for k in tried if k.queue_delay_us] == [100]


def test_a_branch_stops_when_p99_exceeds_the_budget() -> None:
    def slow_tail_with_many_instances(knobs: Knobs, concurrency: int) -> tuple[float, float]:
        return 100.0 * knobs.instances, 5.0 * knobs.instances  # faster, but the tail grows

    space = build_space(cpus=8, max_batch_size=0, preferred=(), queue_delay_us=0, max_concurrency=16,
                        thread_knob=False)
    trials = run(SearchPlan(space, budget_ms=12.0), slow_tail_with_many_instances)
    assert [t.knobs.instances for t in trials] == [1, 2, 4]  # 4 instances broke the budget: 8 never ran
    best = choose_best(trials, 12.0)
    assert best is not None and best.knobs.instances == 2


def test_models_without_batching_or_threads_vary_only_what_they_have() -> None:
    space = build_space(cpus=4, max_batch_size=0, preferred=(), queue_delay_us=0, max_concurrency=4,
                        thread_knob=False)
    trials = run(SearchPlan(space, budget_ms=None, first=Knobs(1)), lambda k, c: (100.0 * k.instances, 1.0))
    assert [t.knobs for t in trials] == [Knobs(1), Knobs(2), Knobs(4)]  # the model's own config came first
    assert all(t.knobs.threads == 0 and t.knobs.max_batch_size == 0 for t in trials)


def test_nothing_meets_an_impossible_budget() -> None:
    trials = run(SearchPlan(batching_space(cpus=2), budget_ms=0.001), peak_at_two_instances)
    assert trials and choose_best(trials, 0.001) is None
    assert len(trials) < 12  # every branch stopped at its first trial, then each batching direction


def test_failed_trials_stop_their_branch_and_never_win() -> None:
    plan = SearchPlan(batching_space(cpus=2), budget_ms=None)
    while (knobs := plan.next()) is not None:
        failed = knobs.instances == 2
        plan.record(Trial(knobs, error="no memory") if failed else Trial(knobs, (Level(4, 100.0, 1, 2),)))
    best = choose_best(plan.trials, None)
    assert best is not None and not best.error and best.knobs.instances == 1
    assert plan.upper_bound() == 0 and plan.next() is None


def test_the_best_few_are_measured_again_and_a_lucky_window_does_not_decide_alone() -> None:
    rounds: dict[Knobs, int] = {}

    def lucky_once_with_two_instances(knobs: Knobs, concurrency: int) -> tuple[float, float]:
        rounds[knobs] = rounds.get(knobs, 0) + (concurrency == 1)
        if knobs.instances == 2:
            return (800.0 if rounds[knobs] == 1 else 100.0), 1.0  # one lucky window, then the truth
        return 500.0 / knobs.instances, 1.0

    space = build_space(cpus=4, max_batch_size=0, preferred=(), queue_delay_us=0, max_concurrency=4,
                        thread_knob=False)
    trials = run(SearchPlan(space, budget_ms=None), lucky_once_with_two_instances)
    assert [(t.knobs.instances, t.rounds) for t in trials] == [(1, 2), (2, 2), (4, 2)]
    assert trials[1].levels[0].throughput == 450.0  # the mean of both rounds
    best = choose_best(trials, None)
    assert best is not None and best.knobs.instances == 1


def test_max_batch_size_never_goes_below_what_an_ensemble_using_the_model_needs() -> None:
    space = build_space(cpus=2, max_batch_size=8, preferred=(), queue_delay_us=0, max_concurrency=16,
                        thread_knob=True, min_batch_size=8)
    up, down = batching_candidates(space, Knobs(1, 2, 8), "max_batch_size")
    assert [k.max_batch_size for k in up] == [16] and down == []


def test_the_models_own_config_counts_as_the_step_of_the_branch_it_belongs_to() -> None:
    space = build_space(cpus=4, max_batch_size=0, preferred=(), queue_delay_us=0, max_concurrency=4,
                        thread_knob=False)
    # 2 instances (the model's own) are measured first; the branch then goes 1 -> (2 counted) -> 4
    trials = run(SearchPlan(space, budget_ms=None, first=Knobs(2)), lambda k, c: (100.0 * k.instances, 1.0))
    assert [t.knobs.instances for t in trials] == [2, 1, 4]
    flat = run(SearchPlan(space, budget_ms=None, first=Knobs(2)), lambda k, c: (100.0, 1.0))
    assert [t.knobs.instances for t in flat] == [2, 1]  # 2 did not beat 1: 4 is never tried
