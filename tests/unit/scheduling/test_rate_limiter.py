"""RateLimiter: resource counts (defaults, flags, per device, global), holding and giving back,
priorities, first come first served, and no waiting forever."""

from __future__ import annotations

from collections import Counter

import pytest

from modelport.config.rate_limiter import RateLimiterSpec, ResourceNeed
from modelport.config.settings import RateLimitResource
from modelport.errors import InvalidInput
from modelport.scheduling.rate_limiter import (
    GLOBAL,
    GRANTED,
    IDLE,
    RUNNING,
    InstanceDemand,
    RateLimiter,
    Ticket,
)

Need = tuple[str, int] | tuple[str, int, bool]  # (name, count[, global])


def demand(*needs: Need, priority: int = 0, device: int = 0) -> InstanceDemand:
    resources = tuple(ResourceNeed(n[0], n[1], bool(n[2]) if len(n) > 2 else False) for n in needs)
    return InstanceDemand(device, RateLimiterSpec(resources, priority))


def one(limiter: RateLimiter, *needs: Need, **kw: int) -> Ticket:
    return limiter.register("m", [demand(*needs, **kw)])[0]


def run(limiter: RateLimiter, ticket: Ticket) -> bool:
    """Ask for `ticket`; when granted at once, start it. Whether it runs."""
    if limiter.request([ticket]) == [ticket]:
        limiter.start(ticket)
        return True
    return False


# --- counts -------------------------------------------------------------------------------------


def test_default_counts_are_the_most_any_instance_needs_per_device_and_global() -> None:
    limiter = RateLimiter()
    limiter.register("a", [demand(("R1", 4), ("R2", 4))])
    limiter.register("b", [demand(("R2", 5), ("R3", 10), ("R4", 5)), demand(("R2", 1), device=1)])
    limiter.register("c", [demand(("R1", 1), ("R3", 7), ("R4", 2)), demand(("G", 3, True), device=1)])
    assert limiter.capacity() == {
        (0, "R1"): 4, (0, "R2"): 5, (0, "R3"): 10, (0, "R4"): 5, (1, "R2"): 1, (GLOBAL, "G"): 3,
    }  # fmt: skip


def test_flag_counts_as_in_tritons_two_device_example() -> None:
    # --rate-limit-resource=R1:10 --rate-limit-resource=R2:5:0 --rate-limit-resource=R2:8:1
    # --rate-limit-resource=R3:2
    flags = [RateLimitResource("R1", 10), RateLimitResource("R2", 5, 0), RateLimitResource("R2", 8, 1),
             RateLimitResource("R3", 2)]  # fmt: skip
    limiter = RateLimiter(flags)
    limiter.register("m", [demand(("R1", 1), ("R2", 1), ("R3", 1, True), device=d) for d in (0, 1)])
    assert limiter.capacity() == {
        (GLOBAL, "R3"): 2, (0, "R1"): 10, (0, "R2"): 5, (1, "R1"): 10, (1, "R2"): 8,
    }  # fmt: skip


def test_a_global_resource_takes_the_largest_flag_count_whatever_its_device() -> None:
    limiter = RateLimiter([RateLimitResource("G", 2, 0), RateLimitResource("G", 5, 3)])
    one(limiter, ("G", 1, True))
    assert limiter.capacity() == {(GLOBAL, "G"): 5}


def test_too_few_resources_from_the_flags_refuse_the_model_with_tritons_message() -> None:
    limiter = RateLimiter([RateLimitResource("R", 1)])
    with pytest.raises(InvalidInput) as raised:
        one(limiter, ("R", 2))
    assert raised.value.message == (
        'Resource count for "R" is limited to 1 which will prevent scheduling of one or more model '
        "instances, the minimum required count is 2"
    )
    assert limiter.capacity() == {}  # nothing registered
    with pytest.raises(InvalidInput, match='"Q" is limited to 0 '):  # a resource the flags leave out
        one(limiter, ("R", 1), ("Q", 1))
    with pytest.raises(InvalidInput, match='"R" is limited to 0 '):  # names are case-sensitive
        one(RateLimiter([RateLimitResource("r", 5)]), ("R", 1))
    with pytest.raises(InvalidInput, match='"R" is limited to 0 '):  # flags for another device
        one(RateLimiter([RateLimitResource("R", 5, 1)]), ("R", 1))


def test_a_name_both_global_and_per_device_is_refused_across_models() -> None:
    limiter = RateLimiter()
    one(limiter, ("R", 1, True))
    with pytest.raises(InvalidInput) as raised:
        one(limiter, ("R", 2))
    assert raised.value.message == (
        'Resource "R" is present as both global and device-specific resource in the model configuration.'
    )
    assert limiter.capacity() == {(GLOBAL, "R"): 1}


def test_a_resource_listed_twice_in_a_group_keeps_its_last_count() -> None:
    from modelport.testing.fakes import spec_from_pbtxt

    spec = spec_from_pbtxt(
        'instance_group [{ count: 1 kind: KIND_CPU rate_limiter { resources [ { name: "R" count: 1 }, '
        '{ name: "R" count: 3 }, { name: "G" global: true count: 2 } ] priority: 4 } }]'
    )
    assert spec.instance_groups[0].rate_limiter == RateLimiterSpec(
        (ResourceNeed("R", 3), ResourceNeed("G", 2, True)), priority=4
    )


# --- holding and giving back ---------------------------------------------------------------------


def test_resources_are_held_for_an_execution_and_given_back_after() -> None:
    limiter = RateLimiter([RateLimitResource("R", 2)])
    big, small_a, small_b = (one(limiter, ("R", n)) for n in (2, 1, 1))
    assert run(limiter, small_a)
    assert not run(limiter, big)  # one copy of two is held
    assert not run(limiter, small_b)  # and big is ahead of it in line
    limiter.finish(small_a)
    assert big.state == GRANTED and small_b.state == "waiting"


def test_per_device_resources_are_separate_and_global_ones_shared() -> None:
    limiter = RateLimiter()
    on0, on1 = limiter.register("m", [demand(("R", 1), device=0), demand(("R", 1), device=1)])
    assert run(limiter, on0) and run(limiter, on1)
    g0, g1 = limiter.register("g", [demand(("G", 1, True), device=0), demand(("G", 1, True), device=1)])
    assert run(limiter, g0) and not run(limiter, g1)


def test_an_instance_whose_resources_are_free_is_not_held_up_by_one_waiting_for_others() -> None:
    limiter = RateLimiter()
    holder, waiter, other = one(limiter, ("R", 1)), one(limiter, ("R", 1)), one(limiter, ("Q", 1))
    assert run(limiter, holder) and not run(limiter, waiter)
    assert run(limiter, other)  # Q is not what the waiting one needs


def test_grants_to_instances_not_asking_are_notified_and_withdrawals_give_back() -> None:
    limiter = RateLimiter()
    holder, waiter = one(limiter, ("R", 1)), one(limiter, ("R", 1))
    notified: list[Ticket] = []
    holder.notify = waiter.notify = notified.append
    assert run(limiter, holder) and not run(limiter, waiter)
    assert notified == []  # the asker learns from request()'s answer
    limiter.finish(holder)
    assert notified == [waiter] and waiter.state == GRANTED
    vtime = waiter.vtime
    limiter.withdraw([waiter])  # its scheduler had nothing to send after all
    assert waiter.state == IDLE and waiter.vtime == vtime
    assert run(limiter, holder)


def test_a_withdrawn_waiting_instance_leaves_the_line() -> None:
    limiter = RateLimiter()
    holder, first, second = one(limiter, ("R", 1)), one(limiter, ("R", 1)), one(limiter, ("R", 1))
    assert run(limiter, holder) and not run(limiter, first) and not run(limiter, second)
    limiter.withdraw([first, holder])  # holder is running: left as it is
    limiter.finish(holder)
    assert (first.state, second.state) == (IDLE, GRANTED)


def test_unregistering_gives_back_what_was_held_and_a_late_finish_is_ignored() -> None:
    limiter = RateLimiter()
    stuck, waiter = one(limiter, ("R", 1)), one(limiter, ("R", 1))
    notified: list[Ticket] = []
    waiter.notify = notified.append
    assert run(limiter, stuck) and not run(limiter, waiter)
    limiter.unregister([stuck])  # its model unloaded while its execution was stuck
    assert notified == [waiter]
    limiter.start(waiter)
    limiter.finish(stuck)  # the stuck execution ends at last
    assert waiter.state == RUNNING and not run(limiter, one(limiter, ("R", 1)))


def test_unregistering_lowers_default_counts() -> None:
    limiter = RateLimiter()
    keep = one(limiter, ("R", 1))
    big = one(limiter, ("R", 3))
    limiter.unregister([big])
    assert limiter.capacity() == {(0, "R"): 1}
    limiter.unregister([keep])
    assert limiter.capacity() == {}


# --- order ---------------------------------------------------------------------------------------


def compete(limiter: RateLimiter, tickets: list[Ticket], executions: int) -> list[Ticket]:
    """Every ticket keeps asking; executions end one at a time, oldest first. The order they ran in."""
    order: list[Ticket] = []
    running: list[Ticket] = []

    def note(ticket: Ticket) -> None:
        limiter.start(ticket)
        running.append(ticket)
        order.append(ticket)

    for ticket in tickets:
        ticket.notify = note
        if limiter.request([ticket]):
            note(ticket)
    while len(order) < executions:
        done = running.pop(0)
        limiter.finish(done, settle=False)  # as a pool does: its scheduler asks again at once
        if limiter.request([done]):  # in line with the waiting ones (a grant to one is noted)
            note(done)
        limiter.settle()
    return order


def test_priority_1_runs_twice_as_often_as_priority_2() -> None:
    limiter = RateLimiter()
    fast, slow = one(limiter, ("R", 1), priority=1), one(limiter, ("R", 1), priority=2)
    counts = Counter(compete(limiter, [slow, fast], 300))
    assert counts[fast] == pytest.approx(200, abs=2) and counts[slow] == pytest.approx(100, abs=2)


def test_priority_0_counts_as_1_and_equals_alternate() -> None:
    limiter = RateLimiter()
    a, b = one(limiter, ("R", 1), priority=0), one(limiter, ("R", 1), priority=1)
    order = compete(limiter, [a, b], 20)
    assert order == [a, b] * 10


def test_waiting_instances_go_first_come_first_served() -> None:
    limiter = RateLimiter()
    holder = one(limiter, ("R", 1))
    assert run(limiter, holder)
    waiters = [one(limiter, ("R", 1)) for _ in range(5)]
    order: list[Ticket] = []
    for ticket in waiters:
        ticket.notify = order.append
        assert not run(limiter, ticket)
    limiter.finish(holder)
    for _ in range(4):
        limiter.start(order[-1])
        limiter.finish(order[-1])
    assert order == waiters


def test_a_newcomer_joins_at_the_current_time_instead_of_overtaking_for_its_past() -> None:
    limiter = RateLimiter()
    old = one(limiter, ("R", 1))
    compete(limiter, [old], 100)  # alone: its virtual time is far on
    new = one(limiter, ("R", 1))
    limiter.finish(old)
    order = compete(limiter, [old, new], 20)
    assert Counter(order)[old] >= 9  # they alternate; the newcomer does not get 100 in a row


@pytest.mark.parametrize("asks_first", [True, False], ids=["asking-again-before-settling", "asking-after"])
def test_an_instance_needing_more_is_not_starved_by_a_stream_of_smaller_ones(asks_first: bool) -> None:
    limiter = RateLimiter([RateLimitResource("R", 2)])
    smalls = [one(limiter, ("R", 1)) for _ in range(3)]
    big = one(limiter, ("R", 2), priority=5)
    order: list[Ticket] = []
    running: list[Ticket] = []

    def note(ticket: Ticket) -> None:
        limiter.start(ticket)
        running.append(ticket)
        order.append(ticket)

    for ticket in smalls:
        ticket.notify = note
        if limiter.request([ticket]):
            note(ticket)
    big.notify = note
    assert not limiter.request([big])  # both copies are held by small ones
    for _ in range(10):
        done = running.pop(0)
        limiter.finish(done, settle=not asks_first)
        if limiter.request([done]):
            note(done)
        limiter.settle()
        if big in order:
            break
    assert big in order and order.index(big) <= 3
