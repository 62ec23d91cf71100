"""Prices from the shipped table, overrides and LiteLLM's file; offline tiktoken counts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from llm_cache_router_integrations.cost import (
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
