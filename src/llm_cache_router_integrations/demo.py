"""The offline demo behind ``make demo``: a failing cloud, a local model, LangChain, cache and budget.

Without API keys the "cloud" is an OpenAI-format server on 127.0.0.1 that answers every request
with HTTP 503 (an outage), and the answers come from SmolLM2-135M-Instruct running in this process
(the ``local`` provider). With API keys in the environment (those :meth:`LLMRouter.from_env` reads)
the real providers are used instead, still backed by the local model. Every figure printed comes
from the calls made here. For cost, savings and the budget to have something to count, the local
model is billed at gpt-4o-mini's list price in this demo (it is free by default).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from contextlib import ExitStack
from typing import Any

from .cache import CacheConfig
from .cost.pricing import default_pricing
from .errors import BudgetExceededError
from .providers import LocalProvider
from .providers.local import DEFAULT_LOCAL_MODEL
from .router import ENV_PROVIDERS, LLMRouter
from .testing import JSONReply
from .testing.openai_server import OpenAIServer
from .testing.server import RecordedRequest, Reply

__all__ = ["OutageServer", "build_router", "run_demo"]

LOCAL_KEY = f"local/{DEFAULT_LOCAL_MODEL}"
DAILY_BUDGET_USD = 0.01
SYSTEM_PROMPT = "You are a concise support assistant. Answer in one short paragraph."
ANSWER_STOP = ["\n\n"]  # one paragraph: the answer then ends with finish_reason "stop" (cacheable)
CACHE_QUESTIONS = (
    ("miss", "How do I reset my password?"),
    ("exact", "How do I reset my password?"),
    ("paraphrase", "How can I reset my password?"),
    ("near-miss (entity)", "How do I reset my password on Android?"),
)


class OutageServer(OpenAIServer):
    """An OpenAI-format loopback server that answers every request with HTTP 503."""

    def answer(self, request: RecordedRequest) -> Reply:
        """Always the overloaded error."""
        return JSONReply(
            {"error": {"message": "The server is overloaded", "type": "server_error"}}, status=503
        )


def _env_providers() -> dict[str, dict[str, Any]]:
    """The cloud providers configured by API-key variables (as :meth:`LLMRouter.from_env`)."""
    found: dict[str, dict[str, Any]] = {}
    for name, variables, models in ENV_PROVIDERS:
        if any(os.environ.get(v) for v in variables):
            found[name] = {"models": list(models)}
    return found


def build_router(cloud: dict[str, dict[str, Any]], local: LocalProvider) -> LLMRouter:
    """The demo's router: the cloud providers first, the local model last, cache and budget on."""
    chain = [f"{name}/{cfg['models'][0]}" for name, cfg in cloud.items()] + [LOCAL_KEY]
    pricing = default_pricing()
    pricing.free_providers = frozenset({"ollama"})  # bill the local model (see the module docs)
    pricing.update({DEFAULT_LOCAL_MODEL: {"input": 0.15, "output": 0.60}})
    providers: dict[str, Any] = {**cloud, "local": local}
    return LLMRouter(
        providers,
        fallback_chain=chain,
        cache=CacheConfig(ttl=600),
        budget={"daily_usd": DAILY_BUDGET_USD},
        retry={"max_retries": 1, "base_delay": 0.05},
        pricing=pricing,
    )


def _quiet() -> None:
    """Silence library progress bars and warnings so the demo's own output stays readable."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF conversion bar
    warnings.filterwarnings("ignore")
    logging.getLogger("llm_cache_router_integrations").setLevel(logging.ERROR)
    logging.getLogger("transformers").setLevel(logging.ERROR)


def run_demo() -> int:
    """Run every step and print what happened; returns the exit code."""
    _quiet()
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from .langchain import ChatRouter

    console = Console(highlight=False, width=None if os.isatty(1) else 110)
    started = time.perf_counter()
    env_cloud = _env_providers()
    with ExitStack() as stack:
        outage: OutageServer | None = None
        if env_cloud:
            cloud = env_cloud
            mode = "real providers from the environment: " + ", ".join(cloud)
        else:
            outage = OutageServer()
            outage.start()
            stack.callback(outage.stop)
            cloud = {
                "cloud": {
                    "type": "openai",
                    "api_key": "sk-demo-not-a-real-key-000000",
                    "base_url": outage.base_url,
                    "models": ["gpt-4o-mini"],
                }
            }
            mode = f"simulated cloud: an OpenAI-format server at {outage.base_url} answering 503"
        local = LocalProvider({"models": [DEFAULT_LOCAL_MODEL], "params": {"max_tokens": 96}})
        router = stack.enter_context(build_router(cloud, local))
        cloud_key = router.fallback_chain[0]

        console.rule("[bold]llm-cache-router-integrations: offline demo")
        console.print(f"mode: {mode}")
        console.print(f"local model: {local.source.describe()}")
        console.print(f"fallback chain: {' -> '.join(router.fallback_chain)}\n")

        # ---------------------------------------------------------------- 0. set-up
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("loading SmolLM2-135M-Instruct in-process", total=2)
            local.load()
            progress.update(task, advance=1, description="loading the semantic cache's encoder")
            assert router.cache is not None
            encoder = router.cache.encoder
            if encoder is not None:
                _warm_encoder(encoder)
            progress.update(task, advance=1, description="ready")
        console.print(f"model loaded in {local.load_seconds or 0.0:.1f} s\n")

        # ---------------------------------------------------------------- 1. fallback
        console.rule("1. A routed call while the cloud provider is down")
        response = router.complete_sync("What is the capital of France?")
        table = Table(show_header=False)
        table.add_row("answer", (response.content or "").strip())
        table.add_row("route (tried -> answered)", " -> ".join(response.route))
        table.add_row("provider / model", f"{response.provider_used} / {response.model_used}")
        table.add_row(
            "tokens in / out", f"{response.usage.input_tokens} / {response.usage.output_tokens}"
        )
        table.add_row("latency", f"{response.latency_ms:.0f} ms")
        table.add_row("cost", f"${response.cost_usd:.8f}")
        if outage is not None:
            table.add_row("HTTP requests the cloud got", str(len(outage.requests)))
        console.print(table)

        # ---------------------------------------------------------------- 2. LangChain streaming
        prompt = ChatPromptTemplate.from_messages(
            [("system", SYSTEM_PROMPT), ("human", "{question}")]
        )
        chain = prompt | ChatRouter(router=router, stop=ANSWER_STOP) | StrOutputParser()
        console.rule("2. A streamed answer: prompt | ChatRouter | StrOutputParser")
        console.print("[dim]Q: Tell me about the Eiffel Tower.[/dim]")
        pieces: list[str] = []
        t0 = time.perf_counter()
        first_token_ms: float | None = None
        for piece in chain.stream({"question": "Tell me about the Eiffel Tower."}):
            if piece and first_token_ms is None:
                first_token_ms = (time.perf_counter() - t0) * 1000.0
            pieces.append(piece)
            console.print(piece, end="")
        console.print()
        console.print(
            f"[dim]{len([p for p in pieces if p])} chunks, first after "
            f"{first_token_ms or 0.0:.0f} ms, all after {(time.perf_counter() - t0) * 1000:.0f} ms"
            "[/dim]\n"
        )

        # ---------------------------------------------------------------- 3. cache
        console.rule("3. The semantic cache (same chain)")
        cache_table = Table("call", "question", "served from", "latency", "cost")
        answers: list[tuple[str, str]] = []
        kinds: list[str] = []
        for label, question in CACHE_QUESTIONS:
            before = router.cache.stats.snapshot()
            spent_before = router.stats()["budget"]["spent"]["daily"]
            t0 = time.perf_counter()
            answer = chain.invoke({"question": question})
            latency = (time.perf_counter() - t0) * 1000.0
            after = router.cache.stats.snapshot()
            spent = router.stats()["budget"]["spent"]["daily"] - spent_before
            kind, served = _served_from(before, after)
            kinds.append(kind)
            cache_table.add_row(
                label,
                question,
                served,
                f"{latency:.1f} ms",
                f"${spent:.8f}",
            )
            answers.append((label, answer.strip()))
        console.print(cache_table)
        for label, answer in answers:
            short = answer if len(answer) <= 90 else answer[:87] + "..."
            console.print(f"  [dim]{label}:[/dim] {short}")

        # ---------------------------------------------------------------- 4. budget
        console.rule("4. The budget guard")
        stats_before = router.stats()
        sent_before = len(outage.requests) if outage is not None else None
        calls_before = sum(
            d["successes"] + d["failures"] for d in stats_before["deployments"].values()
        )
        stopped = False
        try:
            router.complete_sync("Write a very long essay about Paris.", max_tokens=100_000)
        except BudgetExceededError as exc:
            stopped = True
            console.print(f"[red]BudgetExceededError[/red]: {str(exc)[:140]}...")
        calls_after = sum(
            d["successes"] + d["failures"] for d in router.stats()["deployments"].values()
        )
        budget_table = Table(show_header=False)
        budget_table.add_row("daily budget", f"${DAILY_BUDGET_USD:.2f}")
        budget_table.add_row(
            "worst case of the call",
            f"${router.estimate_cost('Write a very long essay about Paris.', max_tokens=100_000):.4f}",
        )
        budget_table.add_row("stopped", str(stopped))
        budget_table.add_row("provider calls made for it", str(calls_after - calls_before))
        if outage is not None and sent_before is not None:
            budget_table.add_row(
                "HTTP requests sent for it", str(len(outage.requests) - sent_before)
            )
        console.print(budget_table)

        # ---------------------------------------------------------------- 5. stats
        console.rule("5. router.stats()")
        stats = router.stats()
        cache_stats = stats["cache"] or {}
        summary = Table(show_header=False)
        summary.add_row("requests / successes", f"{stats['requests']} / {stats['successes']}")
        summary.add_row(
            "cache hits (exact / semantic) / misses",
            f"{cache_stats.get('exact_hits', 0)} / {cache_stats.get('semantic_hits', 0)} / "
            f"{cache_stats.get('misses', 0)}",
        )
        summary.add_row("cache hit rate", f"{stats['cache_hit_rate']:.0%}")
        summary.add_row("spent today", f"${stats['budget']['spent']['daily']:.8f}")
        summary.add_row("saved by the cache", f"${stats['saved_cost_usd']:.8f}")
        console.print(summary)
        deployments = Table("deployment", "circuit", "ok", "failed")
        for key, figures in stats["deployments"].items():
            deployments.add_row(
                key, str(figures["circuit"]), str(figures["successes"]), str(figures["failures"])
            )
        console.print(deployments)
        console.print(
            f"[bold]done in {time.perf_counter() - started:.1f} s[/bold] "
            f"(cloud deployment: {cloud_key}, local: {LOCAL_KEY})"
        )
        ok = (
            stopped
            and (bool(env_cloud) or response.provider_used == "local")
            and kinds == ["model", "exact", "semantic", "model"]
        )
    return 0 if ok else 1


def _served_from(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, str]:
    """Where one call's answer came from, by the change in the cache's counters."""
    if after["exact_hits"] > before["exact_hits"]:
        return "exact", "[green]cache (exact)"
    if after["semantic_hits"] > before["semantic_hits"]:
        return "semantic", "[green]cache (semantic)"
    if after["guard_rejections"] > before["guard_rejections"]:
        return "model", "[yellow]model (the guard rejected a near match)"
    if after["ambiguous_rejections"] > before["ambiguous_rejections"]:
        return "model", "[yellow]model (two cached questions were about as near: ambiguous)"
    return "model", "[yellow]model (miss)"


def _warm_encoder(encoder: Any) -> None:
    """Load the cache's encoder now by embedding one text (on the sync portal loop)."""
    from ._sync import run_sync

    run_sync(encoder.embed(["warm-up"]))
