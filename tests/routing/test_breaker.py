"""CircuitBreaker probe tickets: a probe ending without a verdict frees only its own slot."""

from __future__ import annotations

from llm_cache_router_integrations.routing import BreakerConfig, CircuitState
from llm_cache_router_integrations.routing.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def open_breaker(clock: Clock) -> CircuitBreaker:
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1, recovery_timeout=10), clock=clock)
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    clock.now += 10
    return breaker


def test_released_probe_lets_the_next_call_probe() -> None:
    clock = Clock()
    breaker = open_breaker(clock)
    ticket = breaker.admit()
    assert ticket  # a probe slot of this half-open period
    assert breaker.admit() is None  # one probe at a time
    breaker.release_probe(ticket)  # e.g. the caller cancelled it
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.admit() == ticket


def test_closed_ticket_and_stale_ticket_free_nothing() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1, recovery_timeout=10), clock=clock)
    closed = breaker.admit()
    assert closed == 0  # admitted while closed: no probe slot
    breaker.record_failure()
    clock.now += 10
    first = breaker.admit()
    assert first
    breaker.record_failure()  # the probe failed: open again
    clock.now += 10
    second = breaker.admit()
    assert second and second != first
    breaker.release_probe(closed)
    breaker.release_probe(first)  # a late release from the earlier period
    assert breaker.admit() is None  # the current probe still holds the only slot
    breaker.release_probe(second)
    assert breaker.admit() == second
