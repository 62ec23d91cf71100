"""ChatMessage/blocks <-> unified Message, and LLMResponse -> ChatResponse/CompletionResponse."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from llama_index.core.base.llms.types import (
    AudioBlock,
    ChatMessage,
    DocumentBlock,
    ImageBlock,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
    VideoBlock,
)

from llm_cache_router_integrations import InvalidRequestError, LLMResponse, ToolCall, Usage
from llm_cache_router_integrations.llamaindex import to_router_message, to_router_messages
from llm_cache_router_integrations.llamaindex.messages import (
    ChatStreamAssembler,
    to_chat_response,
    to_completion_response,
    tool_calls_of,
)
from llm_cache_router_integrations.types import (
    ImageURLBlock,
    InputAudioBlock,
    StreamChunk,
    ToolCallDelta,
)
from llm_cache_router_integrations.types import TextBlock as RouterText
from llm_cache_router_integrations.types import VideoBlock as RouterVideo

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 24


def test_roles_and_text() -> None:
    converted = to_router_messages(
        [
            ChatMessage(role=MessageRole.SYSTEM, content="be brief"),
            ChatMessage(role=MessageRole.DEVELOPER, content="dev note"),
            ChatMessage(role=MessageRole.USER, content="hi", additional_kwargs={"name": "ann"}),
            ChatMessage(role=MessageRole.CHATBOT, content="hello"),
            ChatMessage(role=MessageRole.MODEL, content="again"),
        ]
    )
    assert [m.role for m in converted] == ["system", "developer", "user", "assistant", "assistant"]
    assert converted[2].content == "hi" and converted[2].name == "ann"
    two_texts = ChatMessage(role="user", blocks=[TextBlock(text="a"), TextBlock(text="b")])
    assert to_router_message(two_texts).content == "a\nb"  # joined like ChatMessage.content
    assert to_router_message(ChatMessage(role="user", blocks=[])).content == ""


def test_tool_messages_need_a_call_id() -> None:
    tool = ChatMessage(
        role=MessageRole.TOOL, content="21 C", additional_kwargs={"tool_call_id": "call_1"}
    )
    message = to_router_message(tool)
    assert message.role == "tool" and message.tool_call_id == "call_1" and message.content == "21 C"
    with pytest.raises(InvalidRequestError, match="tool_call_id"):
        to_router_message(ChatMessage(role=MessageRole.TOOL, content="orphan"))
    legacy = to_router_message(
        ChatMessage(role=MessageRole.FUNCTION, content="ok", additional_kwargs={"name": "lookup"})
    )
    assert legacy.role == "tool" and legacy.tool_call_id == "lookup"
    # an assistant message carrying a tool_call_id (FunctionAgent's return_direct) stays plain
    direct = to_router_message(
        ChatMessage(role="assistant", content="done", additional_kwargs={"tool_call_id": "c"})
    )
    assert direct.tool_call_id is None and direct.content == "done"


def test_assistant_tool_calls_from_blocks_and_kwargs() -> None:
    from_blocks = ChatMessage(
        role="assistant",
        blocks=[
            ToolCallBlock(tool_call_id="call_a", tool_name="weather", tool_kwargs={"city": "Oslo"}),
            ToolCallBlock(tool_call_id="call_b", tool_name="time", tool_kwargs='{"tz": "UTC"}'),
        ],
    )
    message = to_router_message(from_blocks)
    assert message.content is None
    assert [(c.id, c.function.name) for c in message.tool_calls or []] == [
        ("call_a", "weather"),
        ("call_b", "time"),
    ]
    assert json.loads((message.tool_calls or [])[0].function.arguments) == {"city": "Oslo"}
    assert (message.tool_calls or [])[1].function.parsed_arguments() == {"tz": "UTC"}

    openai_shaped = ChatMessage(
        role="assistant",
        content="let me check",
        additional_kwargs={
            "tool_calls": [
                {
                    "id": "call_x",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
                },
                {"id": "call_x", "function": {"name": "weather", "arguments": "{}"}},  # duplicate
            ]
        },
    )
    converted = to_router_message(openai_shaped)
    assert converted.content == "let me check"
    assert [c.id for c in converted.tool_calls or []] == ["call_x"]
    # blocks win over kwargs when both are present (as in our own responses)
    both = ChatMessage(
        role="assistant",
        blocks=[ToolCallBlock(tool_call_id="call_a", tool_name="weather", tool_kwargs={})],
        additional_kwargs={"tool_calls": [{"id": "call_a", "function": {"name": "weather"}}]},
    )
    assert len(tool_calls_of(both)) == 1


def test_images_audio_video(tmp_path: Path) -> None:
    image_file = tmp_path / "cat.png"
    image_file.write_bytes(PNG)
    message = to_router_message(
        ChatMessage(
            role="user",
            blocks=[
                TextBlock(text="what is in these?"),
                ImageBlock(url="https://example.com/cat.png", detail="low"),
                ImageBlock(image=PNG),
                ImageBlock(path=image_file),
                AudioBlock(audio=WAV, format="wav"),
                VideoBlock(url="https://example.com/clip.mp4"),
                ThinkingBlock(content="dropped"),
            ],
        )
    )
    assert isinstance(message.content, list)
    text, url_image, bytes_image, path_image, audio, video = message.content
    assert isinstance(text, RouterText) and text.text == "what is in these?"
    assert isinstance(url_image, ImageURLBlock)
    assert url_image.image_url.url == "https://example.com/cat.png"
    assert url_image.image_url.detail == "low"
    encoded = base64.b64encode(PNG).decode()
    for block in (bytes_image, path_image):
        assert isinstance(block, ImageURLBlock)
        assert block.image_url.url == f"data:image/png;base64,{encoded}"
    assert isinstance(audio, InputAudioBlock)
    assert audio.input_audio.format == "wav"
    assert base64.b64decode(audio.input_audio.data) == WAV
    assert isinstance(video, RouterVideo) and video.video_url.url.endswith("clip.mp4")


def test_unsupported_block_is_a_clear_error() -> None:
    with pytest.raises(InvalidRequestError, match="DocumentBlock"):
        to_router_message(ChatMessage(role="user", blocks=[DocumentBlock(data=b"%PDF-1.4")]))


def _response(**kwargs: object) -> LLMResponse:
    fields: dict[str, object] = {
        "content": "It is sunny.",
        "usage": Usage.of(12, 4, cached_input_tokens=2),
        "provider_used": "openai",
        "model_used": "gpt-4o-mini",
        "cost_usd": 0.0001,
        "route": ["openai/gpt-4o-mini"],
    }
    fields.update(kwargs)
    return LLMResponse.model_validate(fields)


def test_chat_response_shape() -> None:
    call = ToolCall.model_validate(
        {"id": "call_1", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    )
    response = to_chat_response(_response(tool_calls=[call], finish_reason="tool_calls"))
    assert response.message.role == MessageRole.ASSISTANT
    assert response.message.content == "It is sunny."
    blocks = [b for b in response.message.blocks if isinstance(b, ToolCallBlock)]
    assert [(b.tool_call_id, b.tool_name, b.tool_kwargs) for b in blocks] == [
        ("call_1", "weather", {"city": "Paris"})
    ]
    assert response.message.additional_kwargs["tool_calls"][0]["function"]["name"] == "weather"
    assert response.raw is not None
    assert response.raw["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 4,
        "total_tokens": 16,
        "prompt_tokens_details": {"cached_tokens": 2},
    }
    extra = response.additional_kwargs
    assert (extra["prompt_tokens"], extra["completion_tokens"], extra["total_tokens"]) == (
        12,
        4,
        16,
    )
    assert extra["cost_usd"] == 0.0001 and extra["cache_hit"] is False and extra["saved_usd"] == 0
    assert (extra["provider"], extra["model"], extra["route"]) == (
        "openai",
        "gpt-4o-mini",
        ["openai/gpt-4o-mini"],
    )
    # the response converts back into the same tool call (memory round trip)
    back = to_router_message(response.message)
    assert back.tool_calls == [call]

    completion = to_completion_response(_response(cache_hit=True, cost_usd=0.0, saved_usd=0.01))
    assert completion.text == "It is sunny."
    assert completion.additional_kwargs["cache_hit"] is True
    assert completion.additional_kwargs["saved_usd"] == 0.01


def test_stream_assembler_yields_text_then_a_final_response() -> None:
    assembler = ChatStreamAssembler()
    chunks = [
        StreamChunk(delta="Hel"),
        StreamChunk(tool_call_deltas=[ToolCallDelta(index=0, id="c1", name="f", arguments="{}")]),
        StreamChunk(delta="lo"),
        StreamChunk(
            is_final=True,
            usage=Usage.of(3, 2),
            provider_used="p",
            model_used="m",
            cost_usd=0.5,
            route=["p/m"],
        ),
    ]
    out = [assembler.add(c) for c in chunks]
    assert out[1] is None  # a tool-call piece alone yields nothing
    first, final = out[0], out[3]
    assert first is not None and first.delta == "Hel" and first.message.content == "Hel"
    assert final is not None and final.delta == "" and final.message.content == "Hello"
    assert final.raw is not None and final.raw["usage"]["total_tokens"] == 5
    assert final.additional_kwargs["cost_usd"] == 0.5
    assert [b.tool_name for b in final.message.blocks if isinstance(b, ToolCallBlock)] == ["f"]
