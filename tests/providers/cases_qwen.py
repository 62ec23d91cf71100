"""Contract cases for Qwen on DashScope: a commercial model, and an open Qwen3 model via the alias."""

from llm_cache_router_integrations.testing.qwen_server import QwenServer

from .cases import ProviderCase

CASES = [
    ProviderCase(
        provider="qwen",
        server=QwenServer,
        model="qwen-plus",
        config=lambda s: {"api_key": "sk-test-dashscope-0123456789abcdef", "base_url": s.base_url},
    ),
    # An open Qwen3 model thinks by default; switching it off in the provider's params keeps the
    # streamed and complete answers alike (test_qwen.py covers thinking on).
    ProviderCase(
        provider="dashscope",
        server=QwenServer,
        model="qwen3-32b",
        config=lambda s: {
            "api_key": "sk-test-dashscope-0123456789abcdef",
            "base_url": s.base_url,
            "params": {"enable_thinking": False},
        },
    ),
]
