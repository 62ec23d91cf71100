"""Streamed tool calls from OpenAI-compatible servers that number (or fail to number) them oddly.

OpenAI sends ``index`` on every piece and a call's ``id`` on its first piece; Gemini's OpenAI
endpoint omits ``index`` and Ollama's ``/v1`` sends ``index: 0`` for every call. Each scenario is
streamed over loopback HTTP and must give the same calls as the provider's own assembly, as
:class:`StreamAccumulator` fed with the emitted chunks, and as the expected list.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llm_cache_router_integrations import ChatRequest, create_provider
from llm_cache_router_integrations.streaming import StreamAccumulator, ToolCallAssembler
from llm_cache_router_integrations.testing import StreamReply
from llm_cache_router_integrations.testing.openai_server import OpenAIServer
from llm_cache_router_integrations.testing.server import sse
from llm_cache_router_integrations.types import ToolCallDelta


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return sse(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def call(
    arguments: str, *, index: int | None = None, id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {"function": {"arguments": arguments}}
    if index is not None:
        item["index"] = index
    if id is not None:
        item["id"] = id
        item["type"] = "function"
    if name is not None:
        item["function"]["name"] = name
    return {"tool_calls": [item]}


WEATHER = ("call_a", "get_weather", '{"city": "Paris"}')
TIME = ("call_b", "get_time", '{"tz": "CET"}')

SCENARIOS: dict[str, list[dict[str, Any]]] = {
    # Gemini's OpenAI endpoint: no index, each call whole in one piece.
    "no-index": [
        call('{"city": "Paris"}', id="call_a", name="get_weather"),
        call('{"tz": "CET"}', id="call_b", name="get_time"),
    ],
    # Ollama's /v1: index 0 for every call.
    "index-0-reused": [
        call('{"city": "Paris"}', index=0, id="call_a", name="get_weather"),
        call('{"tz": "CET"}', index=0, id="call_b", name="get_time"),
    ],
    # No index, arguments split: pieces without an id continue the current call.
    "no-index-split": [
        call('{"city": ', id="call_a", name="get_weather"),
        call('"Paris"}'),
        call('{"tz": ', id="call_b", name="get_time"),
        call('"CET"}'),
    ],
    # OpenAI itself: id and name on the first piece of each index, arguments in fragments.
    "openai": [
        call("", index=0, id="call_a", name="get_weather"),
        call('{"city"', index=0),
        call(': "Paris"}', index=0),
        call("", index=1, id="call_b", name="get_time"),
        call('{"tz": ', index=1),
        call('"CET"}', index=1),
    ],
    # Servers that repeat the id and name on every piece of the same call.
    "repeated-id-and-name": [
        call('{"city": ', index=0, id="call_a", name="get_weather"),
        call('"Paris"}', index=0, id="call_a", name="get_weather"),
        call('{"tz": ', index=1, id="call_b", name="get_time"),
        call('"CET"}', index=1, id="call_b", name="get_time"),
    ],
}


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    server = OpenAIServer()
    with server:
        yield server


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_parallel_tool_calls_stay_apart(server: OpenAIServer, scenario: str) -> None:
    frames = [chunk({"role": "assistant", **SCENARIOS[scenario][0]})]
    frames += [chunk(delta) for delta in SCENARIOS[scenario][1:]]
    frames += [chunk({}, "tool_calls"), b"data: [DONE]\n\n"]
    server.push(StreamReply(frames))
    provider = create_provider("openai-compatible", {"base_url": server.base_url})
    request = ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "weather and time?"}]}
    )
    accumulator = StreamAccumulator()
    async for piece in provider.astream(request):
        accumulator.add(piece.model_copy(update={"tool_calls": None}) if piece.is_final else piece)
        if piece.is_final:
            final = piece.tool_calls
    expected = [WEATHER, TIME]
    assert [(c.id, c.function.name, c.function.arguments) for c in final or ()] == expected
    rebuilt = accumulator.response().tool_calls  # from the emitted deltas alone
    assert [(c.id, c.function.name, c.function.arguments) for c in rebuilt] == expected
    await provider.aclose()


def test_assembler_starts_a_new_call_on_a_new_id_at_a_used_index() -> None:
    assembler = ToolCallAssembler()
    for delta in (
        ToolCallDelta(index=0, id="call_a", name="get_weather", arguments='{"city": '),
        ToolCallDelta(index=0, arguments='"Paris"}'),
        ToolCallDelta(index=0, id="call_b", name="get_time"),
        ToolCallDelta(index=0, arguments='{"tz": "CET"}'),
        ToolCallDelta(index=1, id="call_c", name="get_date"),  # a later index is still its own
    ):
        assembler.add(delta)
    calls = [(c.id, c.function.name, c.function.arguments) for c in assembler.complete()]
    assert calls == [WEATHER, TIME, ("call_c", "get_date", "{}")]


def test_assembler_keeps_a_fragmented_name_and_a_late_id_together() -> None:
    assembler = ToolCallAssembler()
    for delta in (
        ToolCallDelta(index=0, name="get_"),
        ToolCallDelta(index=0, name="weather", arguments="{}"),
        ToolCallDelta(index=0, id="call_a", name="get_weather"),  # same call, id sent late
    ):
        assembler.add(delta)
    assert [(c.id, c.function.name) for c in assembler.complete()] == [("call_a", "get_weather")]
