"""API keys never leak: not in logs (captured at DEBUG, every logger), exception messages and
tracebacks, reprs, cache keys and stored values, exported JSONL, stats or Prometheus metrics.

Four providers of different wire formats each get a distinctive fake key (one shaped like no
known key format, so only the provider's own redaction can catch it). The loopback servers echo
the key back in error bodies, malformed bodies and stream error events, as real providers
sometimes do; then every text the library produced is scanned for each key and its fragments.
"""

from __future__ import annotations

import json
import logging
import pickle
import traceback
from pathlib import Path
from typing import Any

import pytest
import redis
from langchain_core.load import dumpd
from prometheus_client import CollectorRegistry, generate_latest

from llm_cache_router_integrations import (
    CacheConfig,
    ConfigurationError,
    LLMRouter,
    LLMRouterError,
)
from llm_cache_router_integrations.cache import CacheEngine
from llm_cache_router_integrations.cache.backends.redis import RedisBackend
from llm_cache_router_integrations.cache.embeddings import HashingEncoder
from llm_cache_router_integrations.langchain import ChatRouter
from llm_cache_router_integrations.llamaindex import RouterLLM
from llm_cache_router_integrations.observability.metrics import RouterCollector
from llm_cache_router_integrations.providers import ProviderConfig
from llm_cache_router_integrations.testing import (
    JSONReply,
    LoopbackServer,
    ResetConnection,
    StreamReply,
)
from llm_cache_router_integrations.testing.anthropic_server import AnthropicServer
from llm_cache_router_integrations.testing.gemini_server import GeminiServer
from llm_cache_router_integrations.testing.openai_server import OpenAIServer
from llm_cache_router_integrations.testing.qwen_server import QwenServer
from llm_cache_router_integrations.testing.server import RawReply, sse

KEYS = {
    "openai": "sk-test-SECRET-openai-4f9a2c7e1b3d5a8f",
    "anthropic": "sk-ant-test-SECRET-anthropic-9c8b7a6f5e4d",
    "gemini": "AIzaTestSECRETgemini0123456789abcdefXYZ",
    "qwen": "plainSECRETqwen.77aa88bb99cc00dd",  # matches no known key shape
}
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "gemini": "gemini-2.0-flash",
    "qwen": "qwen-plus",
}
SERVERS: dict[str, type[LoopbackServer]] = {
    "openai": OpenAIServer,
    "anthropic": AnthropicServer,
    "gemini": GeminiServer,
    "qwen": QwenServer,
}


def fragments(key: str) -> set[str]:
    """The key and its obvious fragments (anything of 8+ characters a leak would show)."""
    tail = key[-16:]
    return {key, key[:-4], key[4:], tail, tail[:8], tail[-8:], key[len(key) // 3 :][:12]}


ALL_FRAGMENTS = {f: name for name, key in KEYS.items() for f in fragments(key)}


def leaks(text: str) -> list[str]:
    return sorted({ALL_FRAGMENTS[f] + ":" + f for f in ALL_FRAGMENTS if f in text})


def echo_error(key: str, status: int) -> JSONReply:
    return JSONReply(
        {
            "error": {
                "message": f"Incorrect API key provided: {key}. Authorization: Bearer {key}",
                "type": "invalid_request_error",
                "param": key,
            }
        },
        status=status,
    )


def describe(exc: BaseException) -> str:
    """Everything an exception can show: message, repr, args, chained traceback, pickle."""
    parts = [str(exc), repr(exc), repr(exc.args)]
    parts += traceback.format_exception(exc)
    for attr in ("message", "errors", "partial_text", "cause"):
        parts.append(repr(getattr(exc, attr, None)))
    try:
        parts.append(pickle.dumps(exc).decode("latin-1"))
    except Exception as error:  # an unpicklable error must not leak in its complaint either
        parts.append(repr(error))
    return "\n".join(parts)


@pytest.fixture
def servers() -> Any:
    started = {name: cls().start() for name, cls in SERVERS.items()}
    yield started
    for server in started.values():
        server.stop()


def provider_configs(servers: dict[str, LoopbackServer]) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "type": name,
            "api_key": KEYS[name],
            "base_url": servers[name].base_url,
            "models": [MODELS[name]],
        }
        for name in KEYS
    }


async def test_api_keys_never_leak(
    servers: dict[str, LoopbackServer],
    redis_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: the package's, httpx's, httpcore's...
    for name in ("llm_cache_router_integrations", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    configs = provider_configs(servers)
    engine = CacheEngine(
        CacheConfig(backend="redis", url=redis_url, prefix="secrets"),
        RedisBackend(redis_url, prefix="secrets", dim=128),
        encoder=HashingEncoder(dim=128),
    )
    router = LLMRouter(
        configs,
        cache=engine,
        retry={"max_retries": 1, "base_delay": 0.0, "max_delay": 0.0},
        breaker={"failure_threshold": 1_000},  # every scripted failure must reach its server
        pricing={"qwen-plus": {"input": 0.4, "output": 1.2}},
    )
    texts: dict[str, str] = {}
    errors: list[LLMRouterError] = []

    async def expect_error(name: str, **kwargs: Any) -> None:
        try:
            await router.complete(f"a question for {name}", f"{name}/{MODELS[name]}", **kwargs)
        except LLMRouterError as exc:
            errors.append(exc)
        else:  # pragma: no cover - the scripted reply must fail the call
            raise AssertionError(f"{name}: the scripted failure did not fail the call")

    responses = []
    for name, server in servers.items():
        target = f"{name}/{MODELS[name]}"
        responses.append(await router.complete(f"hello {name}", target, temperature=0))
        responses.append(await router.complete(f"hello {name}", target, temperature=0))  # a hit
        chunks = [c async for c in router.stream(f"stream for {name}", target, temperature=0)]
        texts[f"stream chunks {name}"] = "\n".join(c.model_dump_json() for c in chunks)
        server.push(echo_error(KEYS[name], 401))
        await expect_error(name)
        server.push(echo_error(KEYS[name], 500), echo_error(KEYS[name], 503))
        await expect_error(name)
        server.push(echo_error(KEYS[name], 400))
        await expect_error(name)
        server.push(RawReply(f"<html>bad gateway for key {KEYS[name]}</html>".encode()))
        server.push(RawReply(f"still bad: {KEYS[name]}".encode()))
        await expect_error(name)
        server.push(ResetConnection(), ResetConnection())
        await expect_error(name)
    openai = servers["openai"]
    first = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}],
    }
    openai.push(
        StreamReply([sse(first), sse({"error": {"message": f"key {KEYS['openai']} revoked"}})])
    )
    try:
        async for _ in router.stream("a stream that breaks", "openai/gpt-4o-mini"):
            pass
    except LLMRouterError as exc:
        errors.append(exc)
    assert len(errors) == 5 * len(SERVERS) + 1
    assert all(not server.script for server in servers.values())  # every scripted reply served
    assert type(errors[-1]).__name__ == "StreamInterruptedError"

    # Router-level and configuration errors.
    tiny = LLMRouter({"openai": configs["openai"]}, budget={"daily_usd": 1e-9})
    try:
        await tiny.complete("too expensive", "gpt-4o-mini")
    except LLMRouterError as exc:
        errors.append(exc)
    config_errors: list[Exception] = []
    for bad in (
        {"api_key": KEYS["openai"], "timeout": -1},
        {"api_key": KEYS["openai"], "base_url": "ftp://example.invalid"},
        {"api_key": KEYS["openai"] + "\n"},
        {"api_key": KEYS["openai"], "headers": {"X-Extra": "ü"}},
        {"api_key": KEYS["openai"], "bogus": True},
        {"api_key": [KEYS["openai"]]},  # a key of the wrong type must not be echoed either
        {"api_key": {"key": KEYS["openai"]}},
    ):
        with pytest.raises(ConfigurationError) as info:
            LLMRouter({"openai": bad})
        config_errors.append(info.value)
    with pytest.raises(ValueError) as raw_info:
        ProviderConfig.model_validate({"api_key": KEYS["openai"], "models": "not a list"})
    config_errors.append(raw_info.value)

    # The framework adapters, built from the same configs, used once each.
    chat = ChatRouter(providers=configs, model="openai/gpt-4o-mini")
    chat_answer = await chat.ainvoke("hello from langchain")
    llm = RouterLLM(providers=configs, model="anthropic/claude-3-5-haiku-latest")
    llm_answer = await llm.acomplete("hello from llamaindex")

    # Gather every text the library produced.
    texts["logs"] = caplog.text + "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
    texts["exceptions"] = "\n".join(describe(e) for e in [*errors, *config_errors])
    provider_objects = list(router.providers.values())
    texts["reprs"] = "\n".join(
        [
            repr(router),
            str(router),
            *(repr(p) for p in provider_objects),
            *(repr(p.config) + str(p.config) for p in provider_objects),
            *(p.config.model_dump_json() + repr(p.config.model_dump()) for p in provider_objects),
            *(repr(p.api_key) + str(p.api_key) for p in provider_objects),
            *(repr(d) for d in router.deployments.values()),
            repr(engine.config),
            repr(chat),
            str(chat),
            repr(chat.model_dump()),
            json.dumps(dumpd(chat), default=repr),
            repr(chat._identifying_params),
            repr(chat_answer),
            repr(llm),
            repr(llm.metadata),
            repr(llm_answer),
            json.dumps(llm.to_dict(), default=repr),
        ]
    )
    texts["responses"] = "\n".join(r.model_dump_json() for r in responses)
    export = tmp_path / "cache.jsonl"
    exported = await engine.export_jsonl(export)
    texts["exported jsonl"] = export.read_text(encoding="utf-8")
    client = redis.Redis.from_url(redis_url)
    stored: list[str] = []
    for raw_key in client.scan_iter("*"):
        stored.append(repr(raw_key))
        kind = client.type(raw_key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind == "hash":
            stored += [f"{k!r}={v!r}" for k, v in client.hgetall(raw_key).items()]
        elif kind == "zset":
            stored += [repr(m) for m in client.zrange(raw_key, 0, -1)]
        elif kind == "string":
            stored.append(repr(client.get(raw_key)))
    client.close()
    texts["cache keys and values (redis)"] = "\n".join(stored)
    registry = CollectorRegistry()
    registry.register(RouterCollector(router))
    texts["metrics"] = generate_latest(registry).decode()
    stats = await router.astats()
    texts["stats"] = json.dumps(stats, default=repr)

    # Positive controls: the keys were really used on the wire, and every source is non-empty.
    for name, server in servers.items():
        assert any(KEYS[name] in json.dumps(r.headers) for r in server.requests), name
    assert all(texts.values())
    assert exported >= len(SERVERS) and "hello openai" in texts["exported jsonl"]
    assert "HTTP Request" in texts["logs"]  # httpx's request lines were captured
    assert "***" in texts["exceptions"]  # the echoed keys reached the library and were redacted
    assert stats["failures"] == len(errors) - 1  # the tiny router counts its own failure

    found = {source: leaks(text) for source, text in texts.items()}
    assert {source: hits for source, hits in found.items() if hits} == {}
    await router.aclose()
    await tiny.aclose()
    await chat.llm_router.aclose() if chat.llm_router else None
    print(
        f"\n[secrets] {len(KEYS)} keys x {len(next(iter(fragments(k) for k in KEYS.values())))} "
        f"fragments scanned in {len(texts)} sources ({sum(len(t) for t in texts.values())} "
        f"chars): {len(caplog.records)} log records at DEBUG, {len(errors)} call errors + "
        f"{len(config_errors)} config errors (message, repr, traceback, pickle), reprs of "
        f"router/providers/configs/deployments/ChatRouter/RouterLLM, {len(stored)} Redis keys and "
        f"values, {exported} exported JSONL entries, metrics, stats: 0 leaks"
    )
