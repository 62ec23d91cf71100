"""PriorityGate: a waiter cancelled as a slot is released never frees someone else's slot."""

from __future__ import annotations

import asyncio
import contextlib
import random

from llm_cache_router_integrations.routing.gate import PriorityGate


async def test_cancel_and_release_in_the_same_step_keep_the_count() -> None:
    gate = PriorityGate(max_concurrency=2)
    await gate.acquire()  # A
    await gate.acquire()  # B
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    assert gate.queued == 1
    waiter.cancel()  # e.g. the waiter's asyncio.wait_for ran out ...
    gate.release()  # ... in the same loop step as A finished
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    assert gate.active == 1 and gate.queued == 0  # B still holds its slot
    admitted: list[int] = []

    async def take(i: int) -> None:
        await gate.acquire()
        admitted.append(i)

    takers = [asyncio.create_task(take(i)) for i in range(3)]
    await asyncio.sleep(0.02)
    assert len(admitted) == 1  # one free slot, not two
    for task in takers:
        task.cancel()
    await asyncio.gather(*takers, return_exceptions=True)


async def test_timeouts_under_load_never_exceed_the_limit() -> None:
    gate = PriorityGate(max_concurrency=3)
    running = 0
    peak = 0
    rng = random.Random(7)

    async def call() -> None:
        nonlocal running, peak
        try:
            await asyncio.wait_for(gate.acquire(rng.randint(0, 4)), rng.uniform(0.0, 0.02))
        except TimeoutError:
            return
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(rng.uniform(0.0, 0.01))
        finally:
            running -= 1
            gate.release()

    await asyncio.gather(*(call() for _ in range(400)))
    assert peak <= 3 and gate.max_seen_active <= 3
    assert gate.active == 0 and gate.queued == 0
