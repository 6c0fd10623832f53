"""Residency admission (repository/residency.py): a model requested again while it is being evicted
is admitted afresh once its eviction is counted, instead of loading uncounted."""

from __future__ import annotations

import asyncio

from modelport.repository.records import ModelTable
from modelport.repository.residency import Residency


async def _nothing(_: str) -> None:
    return None


def test_a_model_requested_while_it_is_evicted_is_counted_again() -> None:
    async def scenario() -> tuple[bool, dict[str, int], dict[str, int]]:
        residency = Residency(ModelTable(), budget=100)
        await residency.admit("a", 60, _nothing)
        residency.loaded("a", 0.1, ok=True)
        again: list[asyncio.Task[bool]] = []

        async def unload(name: str) -> None:  # a request for the victim arrives while it unloads
            again.append(asyncio.ensure_future(residency.admit(name, 50, _nothing)))
            await asyncio.sleep(0.01)

        assert await residency.admit("b", 50, unload)  # 'a' is evicted to make room
        readmitted = await again[0]
        return readmitted, dict(residency.bytes), dict(residency.evictions)

    readmitted, held, evictions = asyncio.run(scenario())
    assert readmitted, "a fresh admission, not a reload of a model already counted"
    assert held == {"a": 50, "b": 50}, "both count: a is loading again, b is loading"
    assert evictions == {"a": 1}
