"""Prices from the shipped table, overrides and LiteLLM's file; offline tiktoken counts."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import wave
from pathlib import Path

import pytest

from llm_cache_router_integrations import BudgetExceededError
from llm_cache_router_integrations.cost import (
    Budget,
    BudgetManager,
    PricingTable,
    count_message_tokens,
    count_tokens,
    default_pricing,
    encoding_name_for,
)
from llm_cache_router_integrations.cost.tokens import get_encoding
from llm_cache_router_integrations.types import Message, Usage


def test_shipped_table_and_lookup_rules() -> None:
    table = default_pricing()
    assert len(table) >= 25
    mini = table.price("gpt-4o-mini")
    assert (mini.input, mini.output, mini.cached_input) == (0.15, 0.60, 0.075)
    assert table.price("gpt-4o-mini-2024-07-18") == mini  # dated snapshot
    assert table.price("claude-3-5-haiku-20241022").input == 0.80
    assert table.price("openai/gpt-4o").output == 10.0
    assert table.price("llama3.1:8b", "ollama").cost(Usage.of(1000, 1000)) == 0.0
    usage = Usage.of(1_000_000, 1_000_000, cached_input_tokens=500_000)
    assert mini.cost(usage) == pytest.approx(0.5 * 0.15 + 0.5 * 0.075 + 0.60)


def test_unknown_model_is_free_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    table = default_pricing()
    with caplog.at_level(logging.WARNING):
        assert table.cost("mystery-model", Usage.of(100, 100)) == 0.0
        assert table.cost("mystery-model", Usage.of(100, 100)) == 0.0
    assert sum("mystery-model" in r.message for r in caplog.records) == 1


def test_overrides_and_litellm_file(tmp_path: Path) -> None:
    table = PricingTable({"mine": {"input": 1.0, "output": 2.0}})
    assert table.cost("mine", Usage.of(1_000_000, 500_000)) == pytest.approx(2.0)
    litellm = {
        "sample_spec": {"mode": "chat"},
        "gpt-x": {
            "input_cost_per_token": 2e-06,
            "output_cost_per_token": 8e-06,
            "cache_read_input_token_cost": 5e-07,
            "max_input_tokens": 1000,
            "litellm_provider": "openai",
            "mode": "chat",
        },
        "embed-x": {"input_cost_per_token": 1e-07, "mode": "embedding"},
    }
    path = tmp_path / "model_prices_and_context_window.json"
    path.write_text(json.dumps(litellm))
    assert table.load_litellm(path) == 1
    price = table.price("gpt-x")
    assert (price.input, price.output, price.cached_input, price.context_window) == pytest.approx(
        (2.0, 8.0, 0.5, 1000)
    )


def test_tiktoken_counts_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Any download attempt would go to a dead proxy: the encodings must come from a local copy.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    assert encoding_name_for("gpt-4o-mini") == "o200k_base"
    assert encoding_name_for("gpt-3.5-turbo") == "cl100k_base"
    assert encoding_name_for("claude-3-5-haiku-latest") == "cl100k_base"
    for name in ("o200k_base", "cl100k_base"):
        encoding = get_encoding(name)
        assert encoding is not None
        text = "Routers route requests; caches cache answers. 東京は晴れ"
        assert encoding.decode(encoding.encode(text)) == text  # type: ignore[attr-defined]
    assert count_tokens("hello world", "gpt-4o") == 2
    assert count_tokens("", "gpt-4o") == 0
    messages = [
        Message(role="system", content="Be brief."),
        Message(role="user", content="hello world"),
    ]
    assert count_message_tokens(messages, "gpt-4o") == 3 + (3 + 1 + 3) + (3 + 1 + 2)


def test_premium_variants_have_their_own_price() -> None:
    table = default_pricing()
    for model, listed in [
        ("gpt-5-pro", (15.0, 120.0)),
        ("o1-pro", (150.0, 600.0)),
        ("o3-pro", (20.0, 80.0)),
        ("o3-deep-research", (10.0, 40.0)),
        ("o4-mini-deep-research", (2.0, 8.0)),
        ("o3-pro-2025-06-10", (20.0, 80.0)),  # a snapshot of a variant is still the variant
    ]:
        price = table.price(model, "openai")
        assert (price.input, price.output) == listed, model


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet"),
        ("claude-3-haiku-20240307", "claude-3-haiku"),
        ("claude-3-5-haiku@20241022", "claude-3-5-haiku"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash"),
        ("qwen-plus-latest", "qwen-plus"),
        ("gpt-5-chat-latest", "gpt-5-chat"),
        ("gpt-4o-mini-search-preview", "gpt-4o-mini-search"),
        ("o4-mini-2025-04-16", "o4-mini"),
        ("openai/gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ],
)
def test_snapshots_fall_back_to_their_base_model(model: str, base: str) -> None:
    table = default_pricing()
    assert table.find(model) == table.find(base) is not None


@pytest.mark.parametrize(
    "model", ["gpt-5-turbo-xyz", "o3-mini-high", "gpt-4o-mini-realtime-x", "gpt-5-codex-max"]
)
def test_named_variants_are_unknown_not_their_base_model(
    model: str, caplog: pytest.LogCaptureFixture
) -> None:
    table = default_pricing()
    assert table.find(model) is None and model not in table
    with caplog.at_level(logging.WARNING):
        assert table.price(model) == PricingTable().price("anything-unknown")
    assert sum(model in record.message for record in caplog.records) == 1


# ---------------------------------------------------------------- media blocks


def _image(fmt: str, width: int, height: int, **save: object) -> str:
    pil = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()
    pil.new("RGB", (width, height), (200, 30, 30)).save(buffer, format=fmt, **save)
    return base64.b64encode(buffer.getvalue()).decode()


def _image_message(url: str, detail: str | None = None) -> Message:
    image: dict[str, str] = {"url": url} if detail is None else {"url": url, "detail": detail}
    return Message.model_validate(
        {"role": "user", "content": [{"type": "image_url", "image_url": image}]}
    )


def _media_tokens(message: Message, model: str) -> int:
    text_only = Message(role=message.role, content="")
    return count_message_tokens([message], model) - count_message_tokens([text_only], model)


@pytest.mark.parametrize(
    ("fmt", "save"),
    [
        ("PNG", {}),
        ("JPEG", {"exif": b"Exif\x00\x00" + b"\x00" * 30_000}),  # the frame header after EXIF
        ("GIF", {}),
        ("WEBP", {"lossless": False}),
        ("WEBP", {"lossless": True}),
    ],
)
def test_image_size_is_read_from_inline_bytes(fmt: str, save: dict[str, object]) -> None:
    data = _image(fmt, 1024, 1024, **save)
    url = f"data:image/{fmt.lower()};base64,{data}"
    # OpenAI's documented examples: 1024x1024 high detail = 4 tiles = 765 tokens; low = 85.
    assert _media_tokens(_image_message(url, "high"), "gpt-4o") == 765
    assert _media_tokens(_image_message(url, "auto"), "gpt-4o") == 765
    assert _media_tokens(_image_message(url, "low"), "gpt-4o") == 85
    assert _media_tokens(_image_message(url, "high"), "gpt-4o-mini") == 2833 + 4 * 5667
    assert _media_tokens(_image_message(url), "gemini-2.5-flash") == 4 * 258
    anthropic = Message.model_validate(
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": f"image/{fmt.lower()}",
                        "data": data,
                    },
                }
            ],
        }
    )
    assert _media_tokens(anthropic, "claude-sonnet-4-5") == -(-1024 * 1024 // 750)  # 1399
    assert _media_tokens(anthropic, "gpt-4o") == 765


def test_image_of_unknown_size_counts_as_the_largest_image() -> None:
    # 2048x4096 is OpenAI's documented 1105-token example; a 2048x768 image needs 8 tiles.
    sizes = [(2048, 4096), (2048, 768), (768, 2048), (4000, 1500), (512, 512), (100, 9000)]
    known = [
        _media_tokens(_image_message(f"data:image/png;base64,{_image('PNG', w, h)}"), "gpt-4o")
        for w, h in sizes
    ]
    assert known[:2] == [1105, 85 + 170 * 8]
    unknown = _media_tokens(_image_message("https://example.com/cat.png", "high"), "gpt-4o")
    assert unknown == max(known) == 1445
    # Undecodable or unreadable inline bytes are unknown too.
    assert _media_tokens(_image_message("data:image/png;base64,iVBORw0KGgo="), "gpt-4o") == 1445
    assert _media_tokens(_image_message("data:image/png;base64,@@@"), "gpt-4o") == 1445
    assert _media_tokens(_image_message("https://example.com/cat.png"), "claude-haiku-4-5") == 1600


def test_audio_and_video_counts() -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(b"\x00\x00" * 32_000)  # 2 seconds
    wav = base64.b64encode(buffer.getvalue()).decode()

    def audio(data: str, fmt: str) -> Message:
        block = {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}
        return Message.model_validate({"role": "user", "content": [block]})

    assert 64 <= _media_tokens(audio(wav, "wav"), "gemini-2.5-flash") <= 66  # 32 per second
    assert _media_tokens(audio("SUQzBAAAAAAA", "mp3"), "gemini-2.5-flash") == 300 * 32
    video = Message.model_validate(
        {"role": "user", "content": [{"type": "video_url", "video_url": {"url": "https://v"}}]}
    )
    assert _media_tokens(video, "gemini-2.5-flash") == 300 * 300


async def test_concurrent_image_calls_cannot_overspend_the_budget() -> None:
    # Each call sends four 1024x1024 high-detail images: OpenAI bills 4 * 765 input tokens.
    table = default_pricing()
    price = table.price("gpt-4o")
    image = {"url": f"data:image/png;base64,{_image('PNG', 1024, 1024)}", "detail": "high"}
    content: list[dict[str, object]] = [{"type": "text", "text": "compare these photos"}]
    content += [{"type": "image_url", "image_url": image}] * 4
    messages = [Message.model_validate({"role": "user", "content": content})]
    reserve = price.worst_case(count_message_tokens(messages, "gpt-4o"), 50)
    manager = BudgetManager(Budget(daily_usd=0.01))
    text = [Message(role="user", content="compare these photos")]
    billed = price.cost(Usage.of(count_message_tokens(text, "gpt-4o") + 4 * 765, 50))
    assert reserve >= billed

    async def call() -> bool:
        try:
            reservation = await manager.reserve(reserve)
        except BudgetExceededError:
            return False
        await asyncio.sleep(0.05)  # the calls overlap: every reservation is made before settling
        await manager.settle(reservation, billed)
        return True

    answered = sum(await asyncio.gather(*[call() for _ in range(10)]))
    assert answered >= 1
    assert (await manager.spent())["daily"] <= 0.01
