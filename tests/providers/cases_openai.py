"""Contract cases for OpenAI and the generic OpenAI-compatible provider."""

from llm_cache_router_integrations.testing.openai_server import OpenAIServer

from .cases import ProviderCase

CASES = [
    ProviderCase(
        provider="openai",
        server=lambda: OpenAIServer(model_suffix="-2024-07-18"),
        model="gpt-4o-mini",
        config=lambda s: {"api_key": "sk-test-openai-0123456789abcdef", "base_url": s.base_url},
    ),
    ProviderCase(
        provider="openai-compatible",
        server=OpenAIServer,
        model="meta-llama/Llama-3.1-8B-Instruct",
        config=lambda s: {"base_url": s.base_url},
    ),
]
