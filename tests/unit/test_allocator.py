"""malloc tuning: a freed request-sized buffer is reused instead of being faulted in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelport.cli import allocator

# Allocates what one 600 KB image request allocates (body, joined body, batch copy) 200 times and
# prints the page faults per request.
_CYCLES = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from modelport.cli.allocator import tune_malloc
    assert tune_malloc()
def request():
    body = bytearray(602112 + 200)
    batch = np.frombuffer(body, dtype=np.uint8)[200:].copy()
    return len(bytes(body)) + int(batch[0])
for _ in range(20):
    request()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    request()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 200)
"""


def _faults_per_request(mode: str, env: dict[str, str] | None = None) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _CYCLES, mode], capture_output=True, text=True, check=True, env=env, timeout=60
    )
    return float(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_tuned_malloc_reuses_request_buffers() -> None:
    untuned = _faults_per_request("default")
    tuned = _faults_per_request("tuned")
    assert untuned > 50  # glibc's defaults: the buffers are mapped and faulted in per request
    assert tuned < 2


def test_operator_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert allocator.tune_malloc() is False
