"""The offline demo: a failing "cloud" provider, a healthy fallback, streaming, cache and budget.

Both providers are real HTTP servers on 127.0.0.1 speaking OpenAI's wire format, so every figure
printed comes from real calls through the router.
"""

from __future__ import annotations

import time

from .cache import CacheConfig
from .errors import BudgetExceededError
from .router import LLMRouter
from .testing import JSONReply
from .testing.openai_server import OpenAIServer

__all__ = ["run_demo"]


def _line(label: str, value: object) -> None:
    print(f"  {label:<28} {value}")


def run_demo() -> int:
    """Run every step and print what happened; returns the exit code."""
    outage = JSONReply(
        {"error": {"message": "The server is overloaded", "type": "server_error"}}, status=503
    )
    with OpenAIServer(model_suffix="-2024-07-18") as cloud, OpenAIServer() as backup:
        cloud.push(*[outage] * 3)
        router = LLMRouter(
            {
                "cloud": {
                    "type": "openai",
                    "api_key": "sk-demo-not-a-real-key-000000",
                    "base_url": cloud.base_url,
                    "models": ["gpt-4o-mini"],
                },
                "backup": {
                    "type": "openai-compatible",
                    "base_url": backup.base_url,
                    "models": ["gpt-4.1-nano"],
                },
            },
            fallback_chain=["cloud/gpt-4o-mini", "backup/gpt-4.1-nano"],
            cache=CacheConfig(ttl=600),
            budget={"daily_usd": 0.05},
            retry={"max_retries": 1, "base_delay": 0.05},
        )
        with router:
            print("1. A routed call while the primary provider is down (HTTP 503):")
            response = router.complete_sync(
                "What is the capital of France?", "gpt-4o-mini", temperature=0
            )
            _line("answer", response.content)
            _line("route (tried -> answered)", " -> ".join(response.route))
            _line("provider / model", f"{response.provider_used} / {response.model_used}")
            _line(
                "tokens in / out", f"{response.usage.input_tokens} / {response.usage.output_tokens}"
            )
            _line("cost", f"${response.cost_usd:.8f}")

            print("2. A streamed answer:")
            pieces = []
            for chunk in router.stream_sync(
                "Tell me about the Eiffel Tower", "gpt-4o-mini", temperature=0
            ):
                if chunk.delta:
                    pieces.append(chunk.delta)
                if chunk.is_final:
                    _line("chunks", len(pieces))
                    _line("text", "".join(pieces))
                    _line("final chunk provider", chunk.provider_used)

            print("3. The same question again: served from the cache:")
            started = time.perf_counter()
            again = router.complete_sync(
                "What is the capital of France?", "gpt-4o-mini", temperature=0
            )
            _line("cache hit", again.cache_hit)
            _line(
                "latency (hit vs miss)",
                f"{(time.perf_counter() - started) * 1000:.2f} ms vs {response.latency_ms:.2f} ms",
            )

            print("4. The budget guard stops a call that could overspend, before any HTTP request:")
            sent_before = len(cloud.requests) + len(backup.requests)
            try:
                router.complete_sync("Write a very long essay", "gpt-4o-mini", max_tokens=100_000)
                _line("result", "NOT stopped (unexpected)")
                return 1
            except BudgetExceededError as exc:
                _line("refused", str(exc)[:90] + "...")
                _line(
                    "HTTP requests sent for it",
                    len(cloud.requests) + len(backup.requests) - sent_before,
                )

            stats = router.stats()
            print("5. Stats:")
            _line("requests / successes", f"{stats['requests']} / {stats['successes']}")
            _line("spent today", f"${stats['budget']['spent']['daily']:.8f}")
            _line("saved by the cache", f"${stats['saved_cost_usd']:.8f}")
            _line("cache hit rate", f"{stats['cache_hit_rate']:.0%}")
            for key, figures in stats["deployments"].items():
                _line(
                    key,
                    f"circuit={figures['circuit']} ok={figures['successes']} failed={figures['failures']}",
                )
    return 0
