"""The process accounting mode's arithmetic (repository/process_memory.py): the learned factor, the
estimate, the admission check, and which stretches of loads teach the factor, over a scripted RSS."""

from __future__ import annotations

from pathlib import Path

from modelport.repository.process_memory import ProcessMemory, estimate, fits, learned_factor, readable

MIB = 1 << 20


def test_learned_factor_keeps_the_largest_ratio_after_the_first_load() -> None:
    assert learned_factor(None, False, 8 * MIB, 40 * MIB) == 5.0  # nothing known: the first ratio
    assert learned_factor(5.0, True, 8 * MIB, 16 * MIB) == 2.0  # the first load's ratio is replaced
    assert learned_factor(2.0, False, 8 * MIB, 12 * MIB) == 2.0  # then the largest ratio stays
    assert learned_factor(2.0, False, 8 * MIB, 24 * MIB) == 3.0
    assert learned_factor(2.0, False, 0, 24 * MIB) == 2.0  # an empty folder or a shrinking RSS: no lesson
    assert learned_factor(None, False, 8 * MIB, -MIB) is None


def test_estimate_and_fits() -> None:
    assert estimate(1000, 2.5) == 2500
    assert estimate(3, 1.5) == 5  # rounded up: never under the ratio
    assert fits(used=60, loading=20, wanted=20, budget=100)
    assert not fits(used=60, loading=20, wanted=21, budget=100)


class ScriptedRss:
    """An RSS that the test sets, read by ProcessMemory."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __call__(self) -> int:
        return self.value


def test_stretches_of_loads_teach_the_factor() -> None:
    rss = ScriptedRss(100 * MIB)
    memory = ProcessMemory(rss)
    memory.take_baseline()
    assert memory.estimate("onnxruntime", 8 * MIB) == 8 * MIB  # nothing learned: factor 1
    memory.started("a", "onnxruntime", 8 * MIB, 8 * MIB)
    assert memory.loading() == 8 * MIB
    rss.value += 40 * MIB  # the backend's first load also pays its start-up
    memory.finished("a", ok=True)
    assert memory.factors == {"onnxruntime": 5.0} and memory.loading() == 0
    assert memory.used() == 40 * MIB
    assert not memory.fits(memory.estimate("onnxruntime", 8 * MIB), budget=70 * MIB)  # 40 + 40 > 70
    memory.started("b", "onnxruntime", 8 * MIB, 40 * MIB)
    rss.value += 16 * MIB
    memory.finished("b", ok=True)
    assert memory.factors == {"onnxruntime": 2.0}, "the second stretch's ratio replaces the first's"
    memory.started("c", "onnxruntime", 8 * MIB, 16 * MIB)
    memory.started("d", "onnxruntime", 4 * MIB, 8 * MIB)
    assert memory.loading() == 24 * MIB
    rss.value += 30 * MIB
    memory.finished("c", ok=True)
    assert memory.factors == {"onnxruntime": 2.0}, "a stretch teaches once its last load ends"
    rss.value += 6 * MIB
    memory.finished("d", ok=True)
    assert memory.factors == {"onnxruntime": 3.0}, "36 MiB for 12 MiB of files: the largest ratio"
    rss.value = 90 * MIB
    assert memory.used() == 0, "RSS under the baseline counts as nothing"


def test_spoiled_stretches_teach_nothing() -> None:
    rss = ScriptedRss(100 * MIB)
    memory = ProcessMemory(rss)
    memory.started("a", "python", 4 * MIB, 4 * MIB)
    rss.value += 30 * MIB
    memory.finished("a", ok=False)  # a failed load
    memory.started("b", "python", 4 * MIB, 4 * MIB)
    memory.started("c", "onnxruntime", 4 * MIB, 4 * MIB)
    rss.value += 30 * MIB
    memory.finished("b", ok=True)
    memory.finished("c", ok=True)  # two backends: whose growth was it?
    memory.started("d", "python", 4 * MIB, 4 * MIB)
    memory.unloaded()  # RSS fell meanwhile for another model
    rss.value += 4 * MIB
    memory.finished("d", ok=True)
    memory.started("e", "python", 4 * MIB, 4 * MIB)
    memory.forget("e")  # abandoned
    assert memory.factors == {} and memory.loading() == 0
    memory.started("f", "python", 4 * MIB, 4 * MIB)
    rss.value += 6 * MIB
    memory.finished("f", ok=True)
    assert memory.factors == {"python": 1.5}, "a clean stretch after spoiled ones teaches again"


def test_this_platform_reads_rss() -> None:
    assert readable() == _statm_exists()
    if readable():
        assert ProcessMemory().used() >= 0


def _statm_exists() -> bool:
    return Path("/proc/self/statm").exists()
