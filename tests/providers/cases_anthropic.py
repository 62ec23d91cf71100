"""Contract case for Anthropic's Messages API."""

from llm_cache_router_integrations.testing.anthropic_server import AnthropicServer

from .cases import ProviderCase

CASES = [
    ProviderCase(
        provider="anthropic",
        server=AnthropicServer,
        model="claude-3-5-haiku-latest",
        config=lambda s: {"api_key": "sk-ant-test-0123456789abcdef", "base_url": s.base_url},
    ),
]
