"""Runs a tuning session: one in-process server, the model reloaded with each trial's configuration.

The server runs in explicit model-control mode; each trial loads the model through the repository
load API with the trial's config as an override (the model's files are never written), then the
meter measures every concurrency level: in-process by default, or with `measure` "http"/"grpc"
through that frontend, served by this process on 127.0.0.1 (network.py). The session ends when the search is
over or the next trial would not fit in the time left.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modelport.clock import Deadline
from modelport.config.settings import ServerSettings
from modelport.config.spec import ModelSpec
from modelport.core.server import InferenceServer
from modelport.errors import ModelportError, ModelUnavailable, Unsupported
from modelport.protocol import ModelConfigProto
from modelport.tune.configs import THREADS_PARAMETER, as_json, ensemble_batch_floor, read_base, with_knobs
from modelport.tune.load import InProcessMeter, Meter
from modelport.tune.network import NetworkMeter
from modelport.tune.search import (
    KEEP_OWN_GAIN,
    Knobs,
    SearchPlan,
    Space,
    Trial,
    build_space,
    choose_best,
)

THREADED_BACKENDS = frozenset({"onnxruntime"})  # backends whose config takes intra_op_thread_count
INSTANCES_ONLY_BACKENDS = frozenset({"python"})  # Python models: only the instance count is tuned
_STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class TuneOptions:
    """What `modelport tune` was asked for."""

    model: str
    repository: Path
    concurrency: tuple[int, ...] = (1, 4, 16)
    budget_ms: float | None = None
    max_minutes: float = 3.0
    trial_seconds: float = 2.0
    warmup_seconds: float = 0.5
    cpus: int = 0  # 0: the CPUs this process may use
    keep_own_gain: float = KEEP_OWN_GAIN  # another config must beat the model's own by this fraction
    measure: str = "in-process"  # or "http" / "grpc": through that frontend, from a load process


@dataclass(slots=True)
class TuneOutcome:
    """Every trial in order, the best one under the budget (None: none met it), the configs involved."""

    trials: list[Trial]
    best: Trial | None
    space: Space
    base_config: ModelConfigProto
    thread_knob: bool
    stopped_early: bool = False  # the time limit ended the search
    kept_own: bool = False  # the choice is the model's own configuration
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    def config_of(self, trial: Trial) -> ModelConfigProto:
        return with_knobs(self.base_config, trial.knobs, self.thread_knob)


Progress = Callable[[SearchPlan, float], None]  # called after each trial with the seconds left


async def run_tuning(options: TuneOptions, progress: Progress | None = None) -> TuneOutcome:
    """Search the model's configurations within `options.max_minutes`; see the module docstring."""
    started = time.monotonic()
    ends = started + options.max_minutes * 60.0
    settings = ServerSettings(
        model_repositories=(options.repository,),
        model_control_mode="explicit",
        load_models=(options.model,),
        allow_http=False,
        allow_grpc=False,
        allow_metrics=False,
        grpc_address="127.0.0.1",
        grpc_port=0,  # a free port, for --measure grpc
        exit_timeout_secs=_STOP_TIMEOUT_S,
    )
    server = InferenceServer(settings)
    network = NetworkMeter(server, settings, options.measure) if options.measure != "in-process" else None
    if network is not None:
        await network.start()  # before the model loads: a missing client library is refused at once
    try:
        await server.start()
        outcome = await _search(server, network or InProcessMeter(server), options, ends, progress)
    finally:
        server.begin_shutdown()
        await server.stop(Deadline(_STOP_TIMEOUT_S))
        if network is not None:
            await network.stop()
    outcome.elapsed_s = time.monotonic() - started
    return outcome


async def _search(
    server: InferenceServer, meter: Meter, options: TuneOptions, ends: float, progress: Progress | None
) -> TuneOutcome:
    if not server.is_model_ready(options.model):
        reasons = [e.reason for e in server.repository_index() if e.name == options.model and e.reason]
        raise ModelUnavailable(f"model '{options.model}' did not load: {'; '.join(reasons) or 'not ready'}")
    spec = server.model_spec(options.model)
    _check_tunable(spec)
    base = read_base(options.repository / options.model)
    thread_knob = spec.backend in THREADED_BACKENDS
    batches = spec.max_batch_size > 0 and spec.backend not in INSTANCES_ONLY_BACKENDS
    batching = spec.dynamic_batching
    cpus = options.cpus or len(os.sched_getaffinity(0))
    space = build_space(
        cpus=cpus,
        max_batch_size=spec.max_batch_size if batches else 0,
        preferred=tuple(batching.preferred_batch_sizes) if batching else (),
        queue_delay_us=batching.max_queue_delay_us if batching else 0,
        max_concurrency=max(options.concurrency),
        thread_knob=thread_knob,
        min_batch_size=ensemble_batch_floor(options.repository, options.model),
    )
    # The default thread count made explicit, so that stage one does not measure the same layout again.
    threads = int(spec.parameters.get(THREADS_PARAMETER, "0") or 0) or max(1, cpus // spec.instance_count)
    own = Knobs(
        spec.instance_count,
        threads if thread_knob else 0,
        space.base.max_batch_size,
        space.base.preferred,
        space.base.queue_delay_us,
    )
    plan = SearchPlan(space, options.budget_ms, first=own)
    outcome = TuneOutcome(plan.trials, None, space, base, thread_knob)
    longest = 0.0
    while (knobs := plan.next()) is not None:
        if time.monotonic() + max(longest, _estimate(options)) > ends:
            outcome.stopped_early = True
            break
        began = time.monotonic()
        plan.record(await _trial(server, meter, options, outcome, knobs))
        longest = max(longest, time.monotonic() - began)
        if progress is not None:
            progress(plan, max(0.0, ends - time.monotonic()))
    outcome.best = choose_best(plan.trials, options.budget_ms, own, options.keep_own_gain)
    outcome.kept_own = outcome.best is not None and outcome.best.knobs == own
    return outcome


def _check_tunable(spec: ModelSpec) -> None:
    """Refuse what one closed-loop request per caller cannot drive, or what has no instances of its own."""
    kind = (
        "an ensemble (tune its steps)" if spec.ensemble is not None
        else "decoupled" if spec.decoupled
        else "stateful (sequence batching)" if spec.sequence_batching is not None
        else ""
    )  # fmt: skip
    if kind:
        raise Unsupported(f"model '{spec.name}' is {kind}: modelport tune measures stateless models only")


def _estimate(options: TuneOptions) -> float:
    """A trial's length before one was timed: every level's warm-up and window."""
    return len(options.concurrency) * (options.warmup_seconds + options.trial_seconds)


async def _trial(
    server: InferenceServer, meter: Meter, options: TuneOptions, outcome: TuneOutcome, knobs: Knobs
) -> Trial:
    """Reload the model with `knobs`, measure each concurrency level; a failed load is the trial's error."""
    config = with_knobs(outcome.base_config, knobs, outcome.thread_knob)
    try:
        await server.load_model(options.model, as_json(config))
        meter.prepare(server.model_spec(options.model))
    except ModelportError as exc:
        return Trial(knobs, error=exc.message)
    levels = []
    for concurrency in options.concurrency:
        levels.append(await meter.level(concurrency, options.warmup_seconds, options.trial_seconds))
    return Trial(knobs, tuple(levels))
