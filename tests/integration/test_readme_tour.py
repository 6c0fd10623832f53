"""The README's tour, run as written against a live `make run`-style server over the example repository.

Every fenced `sh` and `python` block between `<!-- tour:start -->` and `<!-- tour:end -->` in README.md
is executed in order: one shell command per line (a line ending in a backslash goes on, a heredoc runs
to its end marker), each python block as a script. Only what a reader's machine differs in is
substituted: the ports (the server listens on free ones, with `make run`'s flags), `.venv/bin/python`
(this interpreter) and `.venv/bin/modelport` (`python -m modelport` of this checkout). Commands run in
a scratch directory that links the repository's `scripts/`, so files they write (input.json) stay out
of the checkout. Each must exit 0; curl is given --fail-with-body so an HTTP error fails it too; the
key outputs are checked below (the canary really sends 2 of 20 requests to version 2, the rollback
sends the next to version 1), and every check must find its command, so the README cannot drop one.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.server import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLES = ROOT / "examples" / "model_repository"
COMMAND_TIMEOUT_S = 60.0
TOUR = re.compile(r"<!-- tour:start -->\n(.*?)<!-- tour:end -->", re.S)
FENCE = re.compile(r"^```(sh|python)\n(.*?)^```$", re.S | re.M)
HEREDOC = re.compile(r"<<-?'?(\w+)'?")

pytestmark = [
    pytest.mark.skipif(
        not (EXAMPLES / "mobilenet_v2" / "2" / "model.onnx").is_file(),
        reason="the example repository with mobilenet_v2's two versions is not built (make models)",
    ),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (make test-tools)"),
]


@dataclass(frozen=True)
class Step:
    kind: str  # "sh" or "python"
    text: str  # as written in the README


def tour_steps(readme: str) -> list[Step]:
    """The tour's commands in order: one per shell line (or continued line, or heredoc), one per python
    block."""
    steps: list[Step] = []
    for region in TOUR.findall(readme):
        for kind, body in FENCE.findall(region):
            if kind == "python":
                steps.append(Step("python", body))
                continue
            lines = iter(body.splitlines())
            for line in lines:
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                command = [line]
                while command[-1].endswith("\\"):
                    command.append(next(lines))
                if heredoc := HEREDOC.search(line):
                    command.extend(_until(lines, heredoc.group(1)))
                steps.append(Step("sh", "\n".join(command)))
    return steps


def _until(lines: Iterator[str], marker: str) -> list[str]:
    body = []
    for line in lines:
        body.append(line)
        if line == marker:
            return body
    raise AssertionError(f"README tour: heredoc without its end marker {marker}")


# --- the server, as `make run` starts it ----------------------------------------------------------------


@dataclass
class MakeRunServer(ServerProcess):
    """`modelport serve` with exactly `make run`'s flags, on free ports."""

    metrics_port: int = 0

    def command(self) -> list[str]:
        return [sys.executable, "-m", "modelport", "serve", "--model-repository", str(self.repository),
                "--http-port", str(self.port), "--grpc-port", str(self.grpc_port),
                "--metrics-port", str(self.metrics_port)]

    def start(self, attempts: int = 3, *, wait_for_models: bool = True) -> None:
        self.metrics_port = free_port()
        super().start(attempts, wait_for_models=wait_for_models)


@pytest.fixture(scope="module")
def tour_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeRunServer]:
    server = MakeRunServer(EXAMPLES, tmp_path_factory.mktemp("tour") / "server.log", grpc=True)
    server.start()
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log()


def localize(text: str, server: MakeRunServer) -> str:
    """The README's command as it runs here: this server's ports, this interpreter, curl failing on errors."""
    python = shlex.quote(sys.executable)
    for default, port in (("8000", server.port), ("8001", server.grpc_port), ("8002", server.metrics_port)):
        text = text.replace(f"localhost:{default}", f"localhost:{port}")
    tools = {"python": python, "modelport": f"{python} -m modelport"}
    text = re.sub(r"(?<![\w/])\.venv/bin/(python|modelport)\b", lambda m: tools[m.group(1)], text)
    return re.sub(r"\bcurl ", "curl --fail-with-body ", text)


def run_step(step: Step, server: MakeRunServer, cwd: Path) -> str:
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path, NO_PROXY="localhost,127.0.0.1", no_proxy="localhost,127.0.0.1")
    text = localize(step.text, server)
    argv = ["bash", "-o", "pipefail", "-c", text] if step.kind == "sh" else [sys.executable, "-c", text]
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert done.returncode == 0, (
        f"README tour command failed ({done.returncode}):\n{step.text}\nstdout:\n{done.stdout}\n"
        f"stderr:\n{done.stderr}\nserver log:\n{server.log()[-4000:]}"
    )
    return done.stdout


# --- what the key commands must answer -----------------------------------------------------------------


def _infer_answer(out: str, version: str) -> None:
    doc = json.loads(out)
    assert doc["model_version"] == version, doc
    assert doc["outputs"][0]["data"][0].endswith(":285:Egyptian cat"), doc


def _canary_counts(out: str) -> None:
    counts = {m.group(2): int(m.group(1)) for m in re.finditer(r'(\d+) "model_version":"(\d)"', out)}
    assert counts == {"1": 18, "2": 2}, out  # the split is exact: 90/10 of 20 requests


def _metrics(out: str) -> None:
    success = r'nv_inference_request_success\{model="mobilenet_v2",version="(\d)"\} [1-9]'
    versions = set(re.findall(success, out))
    assert versions == {"1", "2"}, out


def _stats(out: str) -> None:
    stats = json.loads(out)["model_stats"]
    assert [(s["name"], s["version"]) for s in stats] == [("mobilenet_v2", "2")], stats
    assert stats[0]["inference_count"] == 3, stats  # one asked directly, two from the canary


CHECKS: dict[str, Callable[[str], None]] = {
    r"/v2/health/ready": lambda out: _equal(out.strip(), "200"),
    r"/v2/models/mobilenet_v2 ": lambda out: _equal(json.loads(out)["versions"], ["1", "2"]),
    r"/v2/models/mobilenet_v2/config ": lambda out: _equal(
        json.loads(out)["version_policy"], {"specific": {"versions": [1, 2]}}
    ),
    r"generate_input\.py .*> input\.json": lambda out: None,  # its file is used by the next commands
    r"mobilenet_v2/infer -d @input\.json$": lambda out: _infer_answer(out, "1"),
    r"^import numpy as np, tritonclient": lambda out: _equal(len(re.findall(r"\d+\.\d+:\d+:", out)), 3),
    r"versions/2/infer -d @input\.json": lambda out: _infer_answer(out, "2"),
    r"--split 1:90,2:10": lambda out: _contains(out, "split:          v1: 90, v2: 10", "set by:         api"),
    r"^for i in \$\(seq 20\)": _canary_counts,
    r"versions/2/stats": _stats,
    r"/metrics \| grep": _metrics,
    r"--pin 1": lambda out: _contains(out, "pinned to:      1"),
    r"^curl .*mobilenet_v2/infer .*\| grep -o": lambda out: _equal(out.strip(), '"model_version":"1"'),
    r"--clear": lambda out: _contains(
        out, "pinned to:      -", "split:          v1: 100", "set by:         config"
    ),
    r"infer\(\"image_classifier\"": lambda out: _contains(out, ":285:Egyptian cat"),
}


def _equal(got: object, want: object) -> None:
    assert got == want


def _contains(out: str, *parts: str) -> None:
    for part in parts:
        assert part in out, f"{part!r} not in:\n{out}"


def test_the_tour_has_a_check_for_each_key_command() -> None:
    steps = tour_steps(README.read_text(encoding="utf-8"))
    assert len(steps) >= len(CHECKS), steps
    for pattern in CHECKS:
        matching = [s.text for s in steps if re.search(pattern, s.text, re.M)]
        assert len(matching) == 1, f"README tour: {pattern!r} should match one command, matches {matching}"


def test_every_tour_command_runs_against_a_live_server(tour_server: MakeRunServer, tmp_path: Path) -> None:
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")
    for step in tour_steps(README.read_text(encoding="utf-8")):
        out = run_step(step, tour_server, tmp_path)
        for pattern, check in CHECKS.items():
            if re.search(pattern, step.text, re.M):
                check(out)
