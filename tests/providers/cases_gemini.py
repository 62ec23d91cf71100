"""Contract cases for Google Gemini: a plain model and a thinking model."""

from llm_cache_router_integrations.testing.brain import Answer
from llm_cache_router_integrations.testing.gemini_server import GeminiServer
from llm_cache_router_integrations.types import Usage

from .cases import ProviderCase

THOUGHTS = 17


def thinking_usage(answer: Answer) -> Usage:
    """Thinking tokens are output (and reasoning) tokens on top of the candidates' tokens."""
    return Usage.of(answer.input_tokens, answer.output_tokens + THOUGHTS, reasoning_tokens=THOUGHTS)


CASES = [
    ProviderCase(
        provider="gemini",
        server=GeminiServer,
        model="gemini-2.0-flash",
        config=lambda s: {"api_key": "gm-test-key-0123456789abcdef", "base_url": s.base_url},
    ),
    ProviderCase(
        provider="gemini",
        server=lambda: GeminiServer(thoughts_tokens=THOUGHTS, call_ids=True),
        model="gemini-2.5-flash",
        config=lambda s: {"api_key": "gm-test-key-0123456789abcdef", "base_url": s.base_url},
        expected_usage=thinking_usage,
    ),
]
