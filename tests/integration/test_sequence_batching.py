"""Stateful models through the sequence batcher, driven by tritonclient over HTTP, gRPC unary, the
gRPC stream and the asyncio gRPC stream: Triton's simple_sequence checks, control tensors in both
strategies, correlation-ID errors, idle sequences, the backlog and implicit state."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from support.sequence_models import (
    write_control_echo,
    write_onnx_state_model,
    write_python_state_model,
    write_simple_sequence,
    write_string_dyna_sequence,
)
from support.server import ServerProcess, running_server

VALUES = [11, 7, 5, 3, 2, 0, 1]
TIMEOUT_S = 30.0
IDLE_US = 400_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("sequence_repo")
    write_simple_sequence(repo)
    write_simple_sequence(repo, "simple_dyna_sequence", corrid="TYPE_UINT64")
    write_simple_sequence(
        repo, "oldest_dyna_sequence", corrid="TYPE_UINT64", strategy="oldest { }", instances=2
    )
    write_string_dyna_sequence(repo)
    write_control_echo(repo, "echo_direct", "direct { }")
    write_control_echo(
        repo,
        "echo_oldest",
        "oldest { max_candidate_sequences: 4 preferred_batch_size: [ 4 ]"
        " max_queue_delay_microseconds: 300000 }",
    )
    write_simple_sequence(repo, "short_idle", corrid="TYPE_UINT64", idle_us=IDLE_US, max_batch_size=1)
    write_python_state_model(repo)
    write_onnx_state_model(repo)
    log = tmp_path_factory.mktemp("sequence_logs") / "server.log"
    with running_server(repo, log, grpc=True) as proc:
        yield proc


def _int_input(module: Any, value: int) -> Any:
    tensor = module.InferInput("INPUT", [1, 1], "INT32")
    tensor.set_data_from_numpy(np.full((1, 1), value, np.int32))
    return tensor


def _flags(index: int, count: int) -> dict[str, bool]:
    return {"sequence_start": index == 0, "sequence_end": index == count - 1}


def _expected(values: list[int], dyna: bool, corrid: int) -> list[int]:
    """READY * (INPUT + START [+ END * CORRID]) for each request of a sequence."""
    out = []
    for i, value in enumerate(values):
        total = value + (1 if i == 0 else 0)
        if dyna and i == len(values) - 1:
            total += corrid
        out.append(total)
    return out


def _expected_string(values: list[int], corrid: str) -> list[int]:
    """The string-ID accumulator: START resets to INPUT, then sums; END adds the ID's value."""
    out, total = [], 0
    for i, value in enumerate(values):
        total = value if i == 0 else total + value
        out.append(total + (int(corrid) if i == len(values) - 1 else 0))
    return out


# Three interleaved sequences, as Triton's simple_*_sequence_* example clients send them.
def _sequences(dyna: bool, offset: int) -> list[tuple[str, int | str, list[int]]]:
    negated = [-v for v in VALUES]
    int_model = "simple_dyna_sequence" if dyna else "simple_sequence"
    string_model = "simple_string_dyna_sequence" if dyna else "simple_sequence"
    string_id = str(1002 + offset) if dyna else f"seq-{offset}-uuid"
    return [
        (int_model, 1000 + offset, [0, *VALUES]),
        (int_model, 1001 + offset, [100, *negated]),
        (string_model, string_id, [20, *negated]),
    ]


def _want(model: str, corrid: int | str, values: list[int]) -> list[int]:
    if model == "simple_string_dyna_sequence":
        return _expected_string(values, str(corrid))
    return _expected(values, model == "simple_dyna_sequence", int(corrid) if isinstance(corrid, int) else 0)


def _run_unary(module: Any, url: str, dyna: bool, offset: int) -> dict[int | str, list[int]]:
    got: dict[int | str, list[int]] = {}
    with module.InferenceServerClient(url) as client:
        sequences = _sequences(dyna, offset)
        for step in range(len(VALUES) + 1):  # interleaved: one request of each sequence in turn
            for model, corrid, values in sequences:
                result = client.infer(
                    model, [_int_input(module, values[step])], sequence_id=corrid, **_flags(step, len(values))
                )
                got.setdefault(corrid, []).append(int(result.as_numpy("OUTPUT")[0][0]))
    return got


def _run_stream(url: str, dyna: bool, offset: int) -> dict[int | str, list[int]]:
    results: queue.Queue[Any] = queue.Queue()
    sequences = _sequences(dyna, offset)
    with grpcclient.InferenceServerClient(url) as client:
        client.start_stream(callback=lambda result, error: results.put(error or result))
        for model, corrid, values in sequences:  # each sequence sent whole, all before any answer
            for step, value in enumerate(values):
                client.async_stream_infer(
                    model,
                    [_int_input(grpcclient, value)],
                    request_id=f"{corrid}_{step}",
                    sequence_id=corrid,
                    **_flags(step, len(values)),
                )
        answers = [results.get(timeout=TIMEOUT_S) for _ in range(sum(len(v) for _, _, v in sequences))]
        client.stop_stream()
    return _by_sequence(answers, sequences)


def _by_sequence(
    answers: list[Any], sequences: list[tuple[str, int | str, list[int]]]
) -> dict[int | str, list[int]]:
    got: dict[int | str, list[int]] = {}
    by_name = {str(corrid): corrid for _, corrid, _ in sequences}
    for answer in answers:
        assert not isinstance(answer, InferenceServerException), answer
        corrid = by_name[answer.get_response().id.rsplit("_", 1)[0]]
        got.setdefault(corrid, []).append(int(answer.as_numpy("OUTPUT")[0][0]))
    return got


async def _run_aio_stream(url: str, dyna: bool, offset: int) -> dict[int | str, list[int]]:
    sequences = _sequences(dyna, offset)

    async def requests() -> Any:
        for model, corrid, values in sequences:
            for step, value in enumerate(values):
                yield {
                    "model_name": model,
                    "inputs": [_int_input(aioclient, value)],
                    "request_id": f"{corrid}_{step}",
                    "sequence_id": corrid,
                    **_flags(step, len(values)),
                }

    answers = []
    async with aioclient.InferenceServerClient(url) as client:
        async for result, error in client.stream_infer(requests(), stream_timeout=TIMEOUT_S):
            answers.append(error or result)
            if len(answers) == sum(len(v) for _, _, v in sequences):
                break
    return _by_sequence(answers, sequences)


@pytest.mark.parametrize("dyna", [False, True], ids=["simple_sequence", "dyna_sequence"])
@pytest.mark.parametrize("transport", ["http", "grpc", "grpc_stream", "grpc_aio_stream"])
def test_interleaved_sequences_give_each_its_own_answers(
    server: ServerProcess, transport: str, dyna: bool
) -> None:
    offset = 10 * ["http", "grpc", "grpc_stream", "grpc_aio_stream"].index(transport) + (100 if dyna else 0)
    if transport == "http":
        got = _run_unary(httpclient, server.http_url, dyna, offset)
    elif transport == "grpc":
        got = _run_unary(grpcclient, server.grpc_url, dyna, offset)
    elif transport == "grpc_stream":
        got = _run_stream(server.grpc_url, dyna, offset)
    else:
        got = asyncio.run(_run_aio_stream(server.grpc_url, dyna, offset))
    for model, corrid, values in _sequences(dyna, offset):
        assert got[corrid] == _want(model, corrid, values), (model, corrid)


def _echo(
    client: Any, model: str, corrid: int, value: int, start: bool, end: bool
) -> tuple[list[float], list[int]]:
    result = client.infer(
        model, [_int_input(httpclient, value)], sequence_id=corrid, sequence_start=start, sequence_end=end
    )
    assert int(result.as_numpy("ECHO")[0][0]) == value
    return result.as_numpy("CONTROLS")[0].tolist(), result.as_numpy("PLACE")[0].tolist()


@pytest.mark.parametrize("model", ["echo_direct", "echo_oldest"])
def test_control_tensors_for_start_middle_and_end(server: ServerProcess, model: str) -> None:
    """START / END / READY / CORRID for each request of two interleaved sequences; in the direct
    strategy a sequence keeps its slot (its place in the batch) from start to end."""
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=TIMEOUT_S)
    steps = [(True, False), (False, False), (False, True)]
    places: dict[int, set[int]] = {501: set(), 502: set()}
    for step, (start, end) in enumerate(steps):
        for corrid in (501, 502):
            controls, place = _echo(client, model, corrid, step, start, end)
            assert controls == [float(start), float(end), 1.0, float(corrid)]
            places[corrid].add(place[0])
    if model == "echo_direct":
        assert places == {501: {0}, 502: {1}}  # requests arrive one by one: fillers keep the slots


def test_direct_batches_hold_slots_in_place(server: ServerProcess) -> None:
    """Concurrent sequences run as one batch whose size covers the slots up to the last busy one."""
    barrier = threading.Barrier(3)
    seen: dict[int, list[tuple[list[float], list[int]]]] = {}

    def run(corrid: int) -> None:
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=TIMEOUT_S)
        seen[corrid] = []
        for step in range(4):
            barrier.wait(timeout=TIMEOUT_S)
            seen[corrid].append(_echo(client, "echo_direct", corrid, step, step == 0, step == 3))

    threads = [threading.Thread(target=run, args=(601 + i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S)
    slots = {corrid: {place[0] for _, place in answers} for corrid, answers in seen.items()}
    assert all(len(s) == 1 for s in slots.values()), slots  # each sequence stays in its slot
    assert sorted(next(iter(s)) for s in slots.values()) == [0, 1, 2]
    for answers in seen.values():
        for _, (slot, size) in answers:
            assert size > slot  # the batch reaches at least this sequence's slot


def test_oldest_strategy_batches_across_sequences(server: ServerProcess) -> None:
    barrier = threading.Barrier(4)
    sizes: list[int] = []

    def run(corrid: int) -> None:
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=TIMEOUT_S)
        for step in range(3):
            barrier.wait(timeout=TIMEOUT_S)
            controls, place = _echo(client, "echo_oldest", corrid, step, step == 0, step == 2)
            assert controls[3] == corrid
            sizes.append(place[1])

    threads = [threading.Thread(target=run, args=(701 + i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S)
    assert len(sizes) == 12
    assert max(sizes) > 1  # the preferred batch of 4 gathers requests of different sequences


def test_oldest_strategy_over_two_instances(server: ServerProcess) -> None:
    got = _run_unary_model(server, "oldest_dyna_sequence", [(801, [1, 2, 3]), (802, [10, 20]), (803, [5])])
    assert got == {801: [2, 2, 3 + 801], 802: [11, 20 + 802], 803: [5 + 1 + 803]}


def _run_unary_model(
    server: ServerProcess, model: str, sequences: list[tuple[int, list[int]]]
) -> dict[int, list[int]]:
    got: dict[int, list[int]] = {}
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=TIMEOUT_S)
    for corrid, values in sequences:
        for step, value in enumerate(values):
            result = client.infer(
                model, [_int_input(httpclient, value)], sequence_id=corrid, **_flags(step, len(values))
            )
            got.setdefault(corrid, []).append(int(result.as_numpy("OUTPUT")[0][0]))
    return got


@pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_correlation_id_errors(server: ServerProcess, module: Any) -> None:
    url = server.http_url if module is httpclient else server.grpc_url
    client = module.InferenceServerClient(url)
    cases: list[tuple[str, dict[str, Any], str]] = [
        (
            "simple_dyna_sequence",
            {},
            "inference request to model 'simple_dyna_sequence' must specify a non-zero or non-empty "
            "correlation ID",
        ),
        (
            "simple_dyna_sequence",
            {"sequence_id": 4242},
            "inference request for sequence 4242 to model 'simple_dyna_sequence' must specify the START flag "
            "on the first request of the sequence",
        ),
        (
            "simple_dyna_sequence",
            {"sequence_id": "abc", "sequence_start": True},
            "sequence batching control 'CORRID' data-type is 'BYTES', but model 'simple_dyna_sequence' "
            "expects 'UINT64'",
        ),
        (
            "simple_string_dyna_sequence",
            {"sequence_id": 77, "sequence_start": True},
            "sequence batching control 'CORRID' data-type is 'UINT64', but model "
            "'simple_string_dyna_sequence' expects 'BYTES'",
        ),
    ]
    for model, args, message in cases:
        with pytest.raises(InferenceServerException) as caught:
            client.infer(model, [_int_input(module, 1)], **args)
        assert caught.value.message() == message
        assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    batch = module.InferInput("INPUT", [2, 1], "INT32")
    batch.set_data_from_numpy(np.ones((2, 1), np.int32))
    with pytest.raises(
        InferenceServerException, match="must specify batch-size 1 due to requirements of sequence"
    ):
        client.infer("simple_sequence", [batch], sequence_id=9, sequence_start=True)
    client.close()


def test_an_idle_sequence_ends_and_frees_its_slot(server: ServerProcess) -> None:
    """short_idle has one slot: a second sequence waits in the backlog until the first one has been
    idle for max_sequence_idle_microseconds; after that the first one's ID needs a START again."""
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=TIMEOUT_S)
    first = client.infer("short_idle", [_int_input(httpclient, 5)], sequence_id=901, sequence_start=True)
    assert int(first.as_numpy("OUTPUT")[0][0]) == 6
    began = time.monotonic()
    second = client.infer("short_idle", [_int_input(httpclient, 7)], sequence_id=902, sequence_start=True)
    waited = time.monotonic() - began
    assert int(second.as_numpy("OUTPUT")[0][0]) == 8
    assert waited >= IDLE_US / 1e6 * 0.5  # it waited for the slot
    with pytest.raises(InferenceServerException, match="must specify the START flag"):
        client.infer("short_idle", [_int_input(httpclient, 1)], sequence_id=901)
    client.infer("short_idle", [_int_input(httpclient, 1)], sequence_id=902, sequence_end=True)


def test_the_backlog_serves_more_sequences_than_slots(server: ServerProcess) -> None:
    """Four concurrent sequences on a model with one slot: each waits its turn and gets its own answers."""
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def run(corrid: int) -> None:
        try:
            results.update(_run_unary_model(server, "short_idle", [(corrid, [1, 2, 3])]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(1100 + i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S)
    assert not errors
    assert results == {c: [2, 2, 3 + c] for c in range(1100, 1104)}


@pytest.mark.parametrize(("model", "width"), [("py_state", 2), ("onnx_state", 3)])
def test_implicit_state_accumulates_per_sequence(server: ServerProcess, model: str, width: int) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)

    def send(corrid: int, value: float, start: bool = False, end: bool = False) -> list[float]:
        tensor = grpcclient.InferInput("INPUT", [1, width], "FP32")
        tensor.set_data_from_numpy(np.full((1, width), value, np.float32))
        result = client.infer(model, [tensor], sequence_id=corrid, sequence_start=start, sequence_end=end)
        names = [o.name for o in result.get_response().outputs]
        assert "OUTPUT_STATE" not in names  # the state stays in the server
        return result.as_numpy("OUTPUT")[0].tolist()

    assert send(1, 1, start=True) == [1.0] * width
    assert send(2, 10, start=True) == [10.0] * width
    assert send(1, 2) == [3.0] * width
    assert send(2, 20) == [30.0] * width
    assert send(1, 3, end=True) == [6.0] * width
    assert send(1, 100, start=True) == [100.0] * width  # a new sequence starts from the initial state
    send(1, 0, end=True)
    send(2, 0, end=True)
    client.close()


def test_statistics_count_sequence_requests(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    before = client.get_inference_statistics("simple_dyna_sequence")["model_stats"][0]["inference_count"]
    _run_unary_model(server, "simple_dyna_sequence", [(3001, [1, 2, 3])])
    after = client.get_inference_statistics("simple_dyna_sequence")["model_stats"][0]["inference_count"]
    assert after - before == 3


def test_the_server_log_warns_on_a_restarted_sequence(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    client.infer("simple_dyna_sequence", [_int_input(httpclient, 1)], sequence_id=3100, sequence_start=True)
    again = client.infer(
        "simple_dyna_sequence", [_int_input(httpclient, 1)], sequence_id=3100, sequence_start=True
    )
    assert int(again.as_numpy("OUTPUT")[0][0]) == 2
    client.infer("simple_dyna_sequence", [_int_input(httpclient, 1)], sequence_id=3100, sequence_end=True)
    deadline = time.monotonic() + 5
    while "sequence 3100 for model 'simple_dyna_sequence' has a conflict" not in server.log():
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.05)
