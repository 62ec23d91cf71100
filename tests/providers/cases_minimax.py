"""Contract case for MiniMax (an M2 model that thinks aloud in ``<think>`` tags)."""

from llm_cache_router_integrations.testing.brain import Answer
from llm_cache_router_integrations.testing.minimax_server import MiniMaxServer
from llm_cache_router_integrations.types import Usage

from .cases import ProviderCase

MODEL = "MiniMax-M2"


def minimax_usage(answer: Answer) -> Usage:
    """MiniMax counts the ``<think>`` reasoning in the completion tokens and details it."""
    reasoning = MiniMaxServer.reasoning_tokens(MODEL)
    return Usage.of(
        answer.input_tokens, answer.output_tokens + reasoning, reasoning_tokens=reasoning
    )


CASES = [
    ProviderCase(
        provider="minimax",
        server=MiniMaxServer,
        model=MODEL,
        config=lambda s: {"api_key": "sk-test-minimax-0123456789abcdef", "base_url": s.base_url},
        expected_usage=minimax_usage,
    ),
]
