"""Sync twins inside a running event loop (Jupyter) and interrupted sync calls, over loopback HTTP."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest

from llm_cache_router_integrations import LLMRouter, _sync
from llm_cache_router_integrations._sync import SyncCallDeadlockError
from llm_cache_router_integrations.errors import LLMRouterError
from llm_cache_router_integrations.testing import JSONReply
from llm_cache_router_integrations.testing.openai_server import OpenAIServer
from llm_cache_router_integrations.testing.server import RecordedRequest, Reply

from .conftest import provider


def slow(server: OpenAIServer, delay: float) -> None:
    """Make every JSON answer of ``server`` wait ``delay`` seconds before its headers."""
    answer = server.answer

    def delayed(request: RecordedRequest) -> Reply:
        reply = answer(request)
        if isinstance(reply, JSONReply):
            reply.delay = delay
        return reply

    server.answer = delayed  # type: ignore[method-assign]


@pytest.mark.timeout(30)
def test_sync_call_waiting_on_a_frozen_task_raises_instead_of_hanging(
    servers: list[OpenAIServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = servers[0]
    slow(a, 0.3)
    monkeypatch.setattr(_sync, "FROZEN_LOOP_TIMEOUT", 0.5)
    router = LLMRouter(
        {"a": provider(a, "gpt-4o")}, deployments={"a/gpt-4o": {"max_concurrency": 1}}
    )

    async def notebook_cell() -> tuple[float, str]:
        background = asyncio.create_task(router.complete("background", "gpt-4o"))
        await asyncio.sleep(0.1)  # the background call now holds the only slot
        gate = router.deployments["a/gpt-4o"].gate
        assert gate.active == 1
        started = time.monotonic()
        with pytest.raises(SyncCallDeadlockError, match=r"await router\.complete") as caught:
            router.complete_sync("foreground", "gpt-4o")
        waited = time.monotonic() - started
        assert isinstance(caught.value, LLMRouterError)
        assert gate.queued == 0  # the abandoned call left the queue
        answer = await background  # the frozen call resumes and succeeds
        return waited, answer.content or ""

    waited, content = asyncio.run(notebook_cell())
    assert 0.5 <= waited < 5
    assert content.startswith("Answer to:")
    assert router.deployments["a/gpt-4o"].gate.active == 0
    assert router.complete_sync("afterwards", "gpt-4o").content
    router.close()


def test_slow_sync_call_in_a_running_loop_without_router_tasks_is_not_cut(
    servers: list[OpenAIServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = servers[0]
    slow(a, 0.6)
    monkeypatch.setattr(_sync, "FROZEN_LOOP_TIMEOUT", 0.2)
    router = LLMRouter({"a": provider(a, "gpt-4o")})

    async def notebook_cell() -> str:
        unrelated = asyncio.create_task(asyncio.sleep(10))  # not a router call
        content = router.complete_sync("slow but fine", "gpt-4o").content or ""
        chunks = list(router.stream_sync("a stream", "gpt-4o"))
        assert chunks[-1].is_final
        unrelated.cancel()
        return content

    assert asyncio.run(notebook_cell()).startswith("Answer to:")
    router.close()


@pytest.mark.timeout(30)
@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="needs the main thread"
)
def test_keyboard_interrupt_cancels_the_sync_call(servers: list[OpenAIServer]) -> None:
    a = servers[0]
    slow(a, 3.0)
    router = LLMRouter({"a": provider(a, "gpt-4o")})
    main = threading.main_thread().ident
    assert main is not None
    stop = threading.Event()

    def interrupt_once_in_flight() -> None:
        while not a.requests and not stop.wait(0.01):
            pass
        if not stop.is_set():
            signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C while the reply is pending

    interrupter = threading.Thread(target=interrupt_once_in_flight)
    interrupter.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            router.complete_sync("interrupt me", "gpt-4o")
    finally:
        stop.set()
        interrupter.join()
    assert time.monotonic() - started < 2.5
    gate = router.deployments["a/gpt-4o"].gate
    assert gate.active == 0  # the call was cancelled, not left running on the portal loop
    assert router.stats()["requests"] <= 1
    router.close()


def test_slow_sync_call_beside_background_router_tasks_is_not_cut(
    servers: list[OpenAIServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A background router task in flight on the loop does not make a slow, unqueued sync call a
    deadlock: only a call still queued for a slot or token can be waiting on the frozen loop."""
    a, b = servers[0], servers[1]
    slow(a, 1.5)
    slow(b, 1.0)
    monkeypatch.setattr(_sync, "FROZEN_LOOP_TIMEOUT", 0.3)
    router = LLMRouter({"a": provider(a, "gpt-4o"), "b": provider(b, "gpt-4o-mini")})

    async def notebook_cell() -> tuple[str, str]:
        background = asyncio.create_task(router.complete("background", "gpt-4o"))
        await asyncio.sleep(0.1)  # in flight at the provider
        foreground = router.complete_sync("foreground", "gpt-4o-mini")  # 1 s, no queue
        return foreground.content or "", (await background).content or ""

    foreground, background = asyncio.run(notebook_cell())
    assert foreground.startswith("Answer to:") and background.startswith("Answer to:")
    router.close()
