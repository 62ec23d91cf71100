"""Bad input, fuzzed with hypothesis: messages (content blocks, unicode, huge strings, nesting),
tool schemas, provider configs and cache entries read back from every backend.

Only typed, documented errors may come out: :class:`InvalidRequestError` (a ``ValueError`` whose
message starts ``invalid request: <field>``) for requests, :class:`ConfigurationError` (a
``ValueError`` naming the provider and the field) for configs, typed :class:`ProviderError` for what
a provider answers; a corrupt stored entry is a miss. Nothing crashes a worker or corrupts the
cache: after each fuzz run the same router still answers and hits. Oversized prompts are refused
before any HTTP call when they exceed the model's context window.

Examples are bounded (``max_examples``, no deadline) and all traffic goes to 127.0.0.1 (provider
configs are exercised through an in-memory ``httpx.MockTransport``: no socket at all).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_cache_router_integrations import (
    CacheConfig,
    ConfigurationError,
    ContextLengthExceededError,
    InvalidRequestError,
    LLMRouter,
    LLMRouterError,
    ProviderError,
)
from llm_cache_router_integrations.cache import CacheEngine, CacheEntry, MemoryBackend, cache_key
from llm_cache_router_integrations.cache.embeddings import HashingEncoder
from llm_cache_router_integrations.cache.entry import MAX_ENTRY_BYTES
from llm_cache_router_integrations.cost.tokens import count_message_tokens
from llm_cache_router_integrations.providers import (
    ProviderConfig,
    create_provider,
    registered_providers,
)
from llm_cache_router_integrations.testing.openai_server import OpenAIServer
from llm_cache_router_integrations.types import ChatRequest, LLMResponse, Usage

from ._backends import BACKENDS, make_backend, redis_url_for, write_raw

KEY = "sk-test-fuzz-0123456789abcdef"
FIELDS = set(ChatRequest.model_fields)
FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same examples in every CI run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)

# -- strategies ---------------------------------------------------------------------------------

# Any code point, lone surrogates included (Python strings may hold them; JSON bodies cannot).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=60)
TEXT = st.one_of(
    st.text(max_size=60),
    ANY_TEXT,
    st.sampled_from(["", " ", "\x00", "\u202e\u200b", "👍🏽" * 20, "é" * 300, "Ω\r\n\t"]),
)
HUGE_TEXT = st.integers(min_value=20_000, max_value=400_000).map(lambda n: ("word " * n)[:n])
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), TEXT)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def nested(depth: int) -> Any:
    value: Any = "deep"
    for i in range(depth):
        value = [value] if i % 2 else {"content": value}
    return value


DEEP = st.integers(min_value=1, max_value=3_000).map(nested)
BLOCK = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": TEXT | HUGE_TEXT | JSON}),
    st.fixed_dictionaries(
        {"type": st.just("image_url")},
        optional={
            "image_url": st.fixed_dictionaries(
                {"url": TEXT}, optional={"detail": st.sampled_from(["auto", "low", "x", None])}
            )
            | JSON
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("image")},
        optional={
            "source": st.fixed_dictionaries(
                {"type": st.sampled_from(["base64", "url", "file"])},
                optional={"media_type": TEXT, "data": TEXT, "url": TEXT},
            )
        },
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("input_audio"),
            "input_audio": st.fixed_dictionaries({"data": TEXT, "format": TEXT}),
        }
    ),
    st.fixed_dictionaries({"type": st.just("video_url"), "video_url": JSON}),
    st.dictionaries(TEXT, JSON, max_size=3),
    DEEP,
)
TOOL_CALL = st.fixed_dictionaries(
    {"id": TEXT, "function": st.fixed_dictionaries({"name": TEXT}, optional={"arguments": TEXT})},
    optional={"type": st.sampled_from(["function", "other"])},
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "bot", ""])},
    optional={
        "content": st.one_of(TEXT, st.none(), st.lists(BLOCK, max_size=4), JSON, HUGE_TEXT),
        "name": TEXT,
        "tool_call_id": TEXT,
        "tool_calls": st.lists(TOOL_CALL, max_size=2),
    },
)
UNICODE = st.one_of(st.text(max_size=80), st.sampled_from(["\u202e\u200b", "👍🏽" * 20, "é\x00"]))
VALID_BLOCK = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": UNICODE}),
    st.fixed_dictionaries(
        {
            "type": st.just("image_url"),
            "image_url": st.fixed_dictionaries({"url": st.text(min_size=1, max_size=40)}),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("input_audio"),
            "input_audio": st.fixed_dictionaries(
                {
                    "data": st.text(min_size=1, max_size=40),
                    "format": st.sampled_from(["wav", "mp3"]),
                }
            ),
        }
    ),
)
VALID_MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "user", "assistant"]),
        "content": st.one_of(UNICODE, st.lists(VALID_BLOCK, min_size=1, max_size=3), HUGE_TEXT),
    }
)
MESSAGES = st.one_of(
    TEXT,
    st.lists(VALID_MESSAGE, min_size=1, max_size=4),
    st.lists(VALID_MESSAGE, min_size=1, max_size=4),
    st.lists(VALID_MESSAGE, min_size=1, max_size=4),
    st.lists(MESSAGE, max_size=5),
    st.lists(MESSAGE, min_size=1, max_size=3).map(
        lambda ms: [*ms, {"role": "user", "content": "and the question?"}]
    ),
    JSON,
    DEEP,
    st.integers(),
    st.binary(max_size=20),
)
PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.one_of(
            st.floats(0, 2), st.floats(0, 2), st.floats(allow_nan=True), st.integers(-3, 3), TEXT
        ),
        "top_p": st.one_of(st.floats(0, 1), st.floats(allow_nan=True)),
        "max_tokens": st.one_of(st.integers(1, 500), st.integers(-5, 300_000), TEXT),
        "stop": st.one_of(TEXT, st.lists(TEXT, max_size=3), JSON),
        "seed": st.one_of(st.integers(), TEXT),
        "response_format": st.one_of(
            JSON,
            st.fixed_dictionaries(
                {
                    "type": st.just("json_schema"),
                    "json_schema": st.fixed_dictionaries(
                        {"schema": st.dictionaries(TEXT, JSON, max_size=3)}
                    ),
                }
            ),
        ),
        "extra": st.dictionaries(st.text("xyz_", min_size=1, max_size=8).map("x_{}".format), JSON),
    },
)


# -- a router against a loopback server, driven from sync hypothesis tests ----------------------


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as run:
        yield run


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAIServer]:
    started = OpenAIServer()
    started.start()
    yield started
    started.stop()


def field_of(error: InvalidRequestError) -> str:
    """The request field an :class:`InvalidRequestError` names (``invalid request: <field>...``)."""
    text = str(error)
    assert text.startswith("invalid request: "), text
    return text.removeprefix("invalid request: ").split(":")[0].split(".")[0].strip()


def check_alive(runner: asyncio.Runner, router: LLMRouter) -> None:
    """The router still answers, stores and hits: nothing was broken or corrupted."""
    question = f"Is the router still healthy at {time.time()}?"
    first = runner.run(router.complete(question, temperature=0))
    second = runner.run(router.complete(question, temperature=0))
    assert first.content and not first.cache_hit
    assert second.cache_hit and second.content == first.content


def test_fuzzed_messages_and_params(runner: asyncio.Runner, server: OpenAIServer) -> None:
    engine = CacheEngine(CacheConfig(), MemoryBackend(dim=64), encoder=HashingEncoder(dim=64))
    router = LLMRouter(
        {"openai": {"api_key": KEY, "base_url": server.base_url, "models": ["gpt-4o-mini"]}},
        cache=engine,
        retry={"max_retries": 0},
    )
    outcomes: Counter[str] = Counter()
    fields: Counter[str] = Counter()

    @settings(FUZZ, max_examples=500)
    @given(messages=MESSAGES, params=PARAMS, stream=st.booleans())
    def run(messages: Any, params: dict[str, Any], stream: bool) -> None:
        async def call() -> None:
            if stream:
                async for _ in router.stream(messages, "gpt-4o-mini", **params):
                    pass
            else:
                await router.complete(messages, "gpt-4o-mini", **params)

        try:
            runner.run(call())
            outcomes["answered"] += 1
        except InvalidRequestError as exc:
            assert isinstance(exc, ValueError)
            field = field_of(exc)
            assert field in FIELDS, str(exc)
            fields[field] += 1
            outcomes["InvalidRequestError"] += 1
        except ContextLengthExceededError as exc:
            assert "context window" in str(exc)
            outcomes["ContextLengthExceededError"] += 1
        except ProviderError as exc:  # typed: what the (loopback) provider made of it
            outcomes[type(exc).__name__] += 1

    run()
    stats = router.stats()
    assert stats["requests"] == sum(outcomes.values()) == stats["successes"] + stats["failures"]
    assert outcomes["answered"] > 20 and outcomes["InvalidRequestError"] > 50, outcomes
    assert engine.stats.snapshot()["errors"] == 0  # no cache exception on any input
    check_alive(runner, router)
    runner.run(router.aclose())
    print(
        f"\n[fuzz/messages] {sum(outcomes.values())} calls: {dict(outcomes)}; invalid fields "
        f"named: {dict(fields)}; stats requests={stats['requests']} = successes "
        f"{stats['successes']} + failures {stats['failures']}; cache errors 0; router healthy"
    )


def test_known_bad_inputs_are_typed(runner: asyncio.Runner, server: OpenAIServer) -> None:
    """The inputs the fuzzers found escaping untyped (TypeError, UnicodeEncodeError, httpx's
    ValueError/InvalidURL, AttributeError), pinned as plain cases."""
    router = LLMRouter(
        {"openai": {"api_key": KEY, "base_url": server.base_url, "models": ["gpt-4o-mini"]}},
        cache=CacheEngine(CacheConfig(), MemoryBackend(dim=64), encoder=HashingEncoder(dim=64)),
    )
    deep: Any = "x"
    for _ in range(50_000):
        deep = [deep]
    calls: list[tuple[Any, dict[str, Any], str]] = [
        (123, {}, "messages"),
        (None, {}, "messages"),
        ({"role": "user", "content": "hi"}, {}, "messages"),
        ("lone \ud800 surrogate", {"temperature": 0}, "messages.0.content"),
        ("hi", {"extra": {"x_p": float("nan")}}, "extra.x_p"),
        ("hi", {"x_unknown": [1.0, float("inf")]}, "extra.x_unknown.1"),
        ("hi", {"extra": {"deep": deep}}, "extra"),
        (
            "hi",
            {"tools": [{"type": "function", "function": {"name": "f", "description": "\udfff"}}]},
            "tools.0.function.description",
        ),
    ]
    before = len(server.requests)
    for messages, params, where in calls:
        with pytest.raises(InvalidRequestError, match=f"^invalid request: {where}"):
            runner.run(router.complete(messages, "gpt-4o-mini", **params))
    assert len(server.requests) == before  # refused before any HTTP call
    stats = router.stats()
    assert stats["requests"] == stats["failures"] == len(calls)
    runner.run(router.aclose())
    configs: list[tuple[Any, str]] = [
        ({"x": {"type": 5, "api_key": KEY}}, "type must be a string"),
        ({"x": "not a mapping"}, "expected a mapping"),
        ({"x": 5}, "expected a mapping"),
        ({5: {"type": "openai", "api_key": KEY}}, "provider name"),
        ({"openai": {"api_key": KEY, "base_url": "http://[::1"}}, "base_url"),
        ({"openai": {"api_key": KEY, "base_url": "http://127.0.0.1:99999"}}, "base_url"),
        ({"openai": {"api_key": KEY, "headers": {"X-Name": "ü"}}}, "headers"),
        ({"openai": {"api_key": KEY + "\n"}}, "API key must be printable"),
    ]
    for providers, message in configs:
        with pytest.raises(ConfigurationError, match=message):
            LLMRouter(providers)
    print(
        f"\n[fuzz/pinned] {len(calls)} bad calls -> InvalidRequestError naming the field, 0 HTTP "
        f"calls, all counted as failures; {len(configs)} bad configs -> ConfigurationError"
    )


# -- tool schemas: every provider's request builder ---------------------------------------------

SCHEMA_TYPE = st.sampled_from(
    ["object", "string", "integer", "number", "boolean", "array", "null", "bogus"]
) | st.lists(st.sampled_from(["string", "null", "integer"]), max_size=3)
SCHEMA = st.recursive(
    st.fixed_dictionaries(
        {"type": SCHEMA_TYPE},
        optional={
            "description": TEXT,
            "enum": st.lists(JSON_LEAF, max_size=3),
            "default": JSON,
            "format": TEXT,
            "const": JSON_LEAF,
        },
    ),
    lambda inner: st.fixed_dictionaries(
        {"type": st.just("object")},
        optional={
            "properties": st.dictionaries(TEXT, inner, max_size=4),
            "required": st.lists(TEXT, max_size=3),
            "items": inner,
            "anyOf": st.lists(inner, max_size=3),
            "$defs": st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
            "$ref": st.sampled_from(["#/$defs/a", "#/$defs/b", "#/nowhere", "x"]),
            "additionalProperties": st.booleans() | inner,
        },
    ),
    max_leaves=15,
) | st.dictionaries(TEXT, JSON, max_size=4)
IDENTIFIER = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_.\-]{0,20}", fullmatch=True)
NAME = st.one_of(IDENTIFIER, IDENTIFIER, IDENTIFIER, TEXT)
TOOL = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["function"] * 9 + ["retrieval"]),
        "function": st.fixed_dictionaries(
            {"name": NAME},
            optional={"description": TEXT | st.none(), "parameters": SCHEMA, "strict": JSON_LEAF},
        ),
    }
)
PROVIDER_TYPES = ["openai", "anthropic", "gemini", "qwen", "minimax", "ollama"]


def test_fuzzed_tool_schemas_reach_every_provider() -> None:
    providers = {
        kind: create_provider(
            kind, {"api_key": KEY, "base_url": "http://127.0.0.1:9", "models": ["m"]}
        )
        for kind in PROVIDER_TYPES
    }
    outcomes: Counter[str] = Counter()

    @settings(FUZZ, max_examples=600)
    @given(
        tools=st.lists(TOOL, min_size=1, max_size=3),
        choice=st.one_of(st.none(), st.sampled_from(["auto", "none", "required", "any"]), NAME),
        stream=st.booleans(),
    )
    def run(tools: list[dict[str, Any]], choice: Any, stream: bool) -> None:
        try:
            request = LLMRouter.build_request(
                "What is the weather in Paris?", "m", tools=tools, tool_choice=choice
            )
        except InvalidRequestError as exc:
            assert field_of(exc) in FIELDS, str(exc)
            outcomes["InvalidRequestError"] += 1
            return
        cache_key(request, "fuzz")  # keys are computed for any valid request
        for kind, provider in providers.items():
            try:
                wire = provider.build_request(request, stream=stream)
            except LLMRouterError as exc:  # a typed refusal (e.g. a schema a provider rejects)
                outcomes[f"{kind}:{type(exc).__name__}"] += 1
                continue
            # What httpx will send: strict JSON, UTF-8.
            json.dumps(wire.body, allow_nan=False, ensure_ascii=False).encode("utf-8")
            httpx.Request(wire.method, wire.url, json=wire.body, headers=wire.headers)
            outcomes[f"{kind}:built"] += 1

    run()
    built = sum(v for k, v in outcomes.items() if k.endswith(":built"))
    assert built > 300 and outcomes["InvalidRequestError"] > 10, outcomes
    print(
        f"\n[fuzz/tools] {sum(outcomes.values())} outcomes over {len(PROVIDER_TYPES)} providers: "
        f"{built} requests built as strict JSON, {outcomes['InvalidRequestError']} invalid "
        f"(field named), typed refusals "
        f"{ {k: v for k, v in outcomes.items() if not k.endswith(':built') and ':' in k} }"
    )


# -- provider configs ----------------------------------------------------------------------------

CONFIG_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "type": st.one_of(
        st.sampled_from([t for t in registered_providers() if t != "local"] + ["bogus", ""]),
        st.none(),
        JSON_LEAF,
    ),
    "api_key": st.one_of(TEXT, st.none(), st.integers(), st.just(KEY)),
    "base_url": st.one_of(
        st.just("http://127.0.0.1:9/v1"),
        st.sampled_from(
            [
                "http://[::1",
                "http://a b",
                "https://",
                "ftp://x",
                "http://127.0.0.1:99999",
                "http://ü.example",
                "http://127.0.0.1:9/\ud800",
                "127.0.0.1:9",
            ]
        ),
        TEXT,
    ),
    "models": st.one_of(st.lists(TEXT, max_size=3), TEXT, st.integers()),
    "timeout": st.one_of(st.floats(allow_nan=True), st.integers(-1, 100), TEXT),
    "connect_timeout": st.floats(allow_nan=True),
    "headers": st.one_of(st.dictionaries(TEXT, TEXT, max_size=2), JSON),
    "params": st.one_of(st.dictionaries(TEXT, JSON, max_size=3), JSON),
    "max_connections": st.one_of(st.integers(-2, 10**20), TEXT),
    "junk": JSON,
}
VALID_CONFIG = {"api_key": KEY, "base_url": "http://127.0.0.1:9/v1", "models": ["m"]}
ONE_FIELD = st.sampled_from(sorted(CONFIG_FIELDS)).flatmap(
    lambda name: CONFIG_FIELDS[name].map(lambda value: {name: value})
)
CONFIG = st.one_of(
    st.fixed_dictionaries({}, optional=CONFIG_FIELDS),  # anything goes
    ONE_FIELD.map(lambda field: {**VALID_CONFIG, **field}),  # one bad field in a good config
    ONE_FIELD.map(lambda field: {**VALID_CONFIG, **field}),
    st.tuples(ONE_FIELD, ONE_FIELD).map(lambda two: {**VALID_CONFIG, **two[0], **two[1]}),
    JSON,
)


# What a ConfigurationError names: a ProviderConfig field, or the part of the config at fault.
CONFIG_WORDS = [*ProviderConfig.model_fields, "API key", "type", "mapping", "name", "config"]


def mock_transport() -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"message": "mock: overloaded"}})

    return httpx.MockTransport(handle)


def test_fuzzed_provider_configs(runner: asyncio.Runner) -> None:
    outcomes: Counter[str] = Counter()

    @settings(FUZZ, max_examples=800)
    @given(
        name=st.one_of(
            st.sampled_from(["openai", "anthropic", "gemini", "qwen", "minimax", "ollama"]), TEXT
        ),
        config=CONFIG,
    )
    def run(name: Any, config: Any) -> None:
        try:
            provider = create_provider(name, config, transport=mock_transport())
            router = LLMRouter({provider.name: provider}, retry={"max_retries": 0})
        except ConfigurationError as exc:
            message = str(exc)
            assert isinstance(exc, ValueError)
            assert "provider" in message, message  # names the provider (or the provider type)
            assert any(word in message for word in CONFIG_WORDS), message  # and what is wrong
            outcomes["ConfigurationError"] += 1
            return
        model = (provider.models or ["m"])[0]
        try:
            runner.run(router.complete("hello", f"{provider.name}/{model}"))
            outcomes["answered"] += 1  # pragma: no cover - the mock always fails
        except (InvalidRequestError, ProviderError, ContextLengthExceededError) as exc:
            outcomes[type(exc).__name__] += 1
        finally:
            runner.run(router.aclose())

    run()
    assert outcomes["ConfigurationError"] > 50, outcomes
    assert outcomes["ProviderUnavailableError"] > 20, outcomes
    print(f"\n[fuzz/configs] {sum(outcomes.values())} configs: {dict(outcomes)}")


# -- the embedding worker ------------------------------------------------------------------------


def test_fuzzed_texts_never_break_the_encoder_worker(
    runner: asyncio.Runner, sentence_encoder: Any
) -> None:
    """The real MiniLM encoder (a worker thread) behind the engine, fed any text directly (not
    through the router, which refuses invalid Unicode first): every failure is a counted miss,
    and the worker keeps serving."""
    engine = CacheEngine(
        CacheConfig(), MemoryBackend(dim=384), encoder=sentence_encoder, guard=False
    )
    outcomes: Counter[str] = Counter()

    @settings(FUZZ, max_examples=60)
    @given(text=st.one_of(UNICODE, ANY_TEXT, HUGE_TEXT, st.just("\ud800 lone surrogate")))
    def run(text: str) -> None:
        request = ChatRequest(model="m", messages=[{"role": "user", "content": text}])
        answer = LLMResponse(content="an answer", provider_used="p", model_used="m")
        errors = engine.stats.snapshot()["errors"]
        stored = runner.run(engine.store(request, answer))
        hit = runner.run(engine.lookup(request))
        failed = engine.stats.snapshot()["errors"] > errors
        outcomes["error counted, miss" if failed else "stored and hit"] += 1
        assert hit is not None or failed
        assert stored or failed

    run()
    # The worker is alive and still right: a paraphrase is a semantic hit.
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "How tall is Everest?"}])
    answer = LLMResponse(content="8849 m", provider_used="p", model_used="m")
    assert runner.run(engine.store(request, answer))
    paraphrase = ChatRequest(
        model="m", messages=[{"role": "user", "content": "how tall is mount everest"}]
    )
    hit = runner.run(engine.lookup(paraphrase))
    assert hit is not None and hit.kind == "semantic"
    assert outcomes["stored and hit"] > 20
    print(
        f"\n[fuzz/encoder] {sum(outcomes.values())} texts (unicode, lone surrogates, up to 400k "
        f"chars) through the MiniLM worker: {dict(outcomes)}; worker alive, semantic hit after"
    )


# -- cache entries read back from every backend ---------------------------------------------------


def valid_entry(exact: str, scope: str = "fuzz-scope") -> CacheEntry:
    return CacheEntry(
        exact=exact,
        scope=scope,
        query="What is the capital of France?",
        namespace="fuzz",
        response=LLMResponse(
            content="Paris", provider_used="p", model_used="m", usage=Usage.of(3, 1)
        ),
        cost_usd=0.001,
        expires_at=time.time() + 3600,
    )


def mutate(data: dict[str, Any], path: list[str], value: Any, action: str) -> str:
    """``data`` (a valid entry as JSON) with the value at ``path`` replaced, deleted or added to."""
    node: Any = data
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            break
        node = node[key]
    if isinstance(node, dict):
        last = path[-1]
        if action == "delete":
            node.pop(last, None)
        elif action == "add":
            node[f"{last}_extra"] = value
        else:
            node[last] = value
    return json.dumps(data, allow_nan=True)


PATHS = st.sampled_from(
    [
        ["exact"], ["scope"], ["query"], ["namespace"], ["cost_usd"], ["created_at"],
        ["expires_at"], ["response"], ["response", "content"], ["response", "usage"],
        ["response", "usage", "input_tokens"], ["response", "tool_calls"],
        ["response", "finish_reason"], ["response", "route"], ["response", "raw"],
    ]
)  # fmt: skip
PAYLOAD = st.one_of(
    st.tuples(PATHS, JSON, st.sampled_from(["replace", "delete", "add"])).map(
        lambda t: ("mutated", t)
    ),
    st.binary(max_size=200).map(lambda b: ("binary", b)),
    TEXT.map(lambda t: ("text", t)),
    JSON.map(lambda v: ("json", json.dumps(v, allow_nan=True))),
    st.integers(MAX_ENTRY_BYTES - 400, MAX_ENTRY_BYTES + 50_000).map(lambda n: ("huge", n)),
)
EXAMPLES = {"memory": 300, "sqlite": 250, "redis": 250, "qdrant": 150}


@pytest.mark.parametrize("kind", BACKENDS)
def test_fuzzed_entries_read_back_from_backends(
    kind: str, runner: asyncio.Runner, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    backend = make_backend(kind, tmp_path, redis_url_for(kind, request), dim=16)
    rng = np.random.default_rng(7)
    vector = rng.standard_normal(16).astype(np.float32)
    runner.run(backend.put(valid_entry("control"), vector))
    outcomes: Counter[str] = Counter()
    counter = iter(range(10**9))

    def payload_text(kind_: str, value: Any, exact: str) -> str | bytes:
        if kind_ == "mutated":
            path, replacement, action = value
            data = json.loads(valid_entry(exact).to_json())
            return mutate(data, path, replacement, action)
        if kind_ == "huge":
            entry = valid_entry(exact)
            entry.response.content = "x" * int(value)
            return entry.to_json()
        return value  # type: ignore[no-any-return]

    @settings(FUZZ, max_examples=EXAMPLES[kind])
    @given(payload=PAYLOAD)
    def run(payload: tuple[str, Any]) -> None:
        exact = f"fuzz-{next(counter)}"
        runner.run(backend.put(valid_entry(exact), vector))
        data = payload_text(payload[0], payload[1], exact)
        runner.run(write_raw(backend, exact, data))
        got = runner.run(backend.get(exact))
        found = runner.run(backend.search("fuzz-scope", vector, k=3))
        for entry in [got, *(e for e, _ in found)]:
            if entry is None:
                continue
            # Whatever comes back is a complete, valid entry, filed under its own key.
            assert isinstance(entry, CacheEntry)
            CacheEntry.model_validate_json(entry.to_json())
            assert entry.scope == "fuzz-scope" or entry.exact != exact
            assert math.isfinite(entry.cost_usd)
        outcomes[f"{payload[0]}:{'kept' if got is not None else 'miss'}"] += 1
        runner.run(backend.delete(exact))

    try:
        run()
        control = runner.run(backend.get("control"))
        assert control is not None and control.response.content == "Paris"
        found = runner.run(backend.search("fuzz-scope", vector, k=1))
        assert [e.exact for e, _ in found] == ["control"]
    finally:
        runner.run(backend.aclose())
    misses = sum(v for k, v in outcomes.items() if k.endswith(":miss"))
    kept = sum(v for k, v in outcomes.items() if k.endswith(":kept"))
    assert misses > 0
    print(
        f"\n[fuzz/entries/{kind}] {misses + kept} planted payloads: {misses} rejected as misses, "
        f"{kept} still valid entries (harmless mutations); {dict(outcomes)}; no exception, "
        f"control entry intact"
    )


# -- oversized prompts ---------------------------------------------------------------------------


def test_oversized_prompts_rejected_before_any_http_call(
    runner: asyncio.Runner, server: OpenAIServer
) -> None:
    outcomes: Counter[str] = Counter()

    def router_with_window(window: int) -> LLMRouter:
        return LLMRouter(
            {"openai": {"api_key": KEY, "base_url": server.base_url, "models": ["ctx-model"]}},
            pricing={"ctx-model": {"input": 1.0, "output": 1.0, "context_window": window}},
            retry={"max_retries": 0},
        )

    @settings(FUZZ, max_examples=200)
    @given(
        window=st.integers(16, 3_000),
        words=st.integers(0, 4_000),
        max_tokens=st.none() | st.integers(1, 3_000),
        stream=st.booleans(),
        filler=st.sampled_from(["word ", "é ", "数据 ", "👍🏽 "]),
    )
    def run(window: int, words: int, max_tokens: int | None, stream: bool, filler: str) -> None:
        router = router_with_window(window)
        prompt = filler * words or "hi"
        request = LLMRouter.build_request(prompt, "ctx-model", max_tokens=max_tokens)
        needed = count_message_tokens(request.messages, "ctx-model") + (max_tokens or 0)
        before = len(server.requests)

        async def call() -> None:
            if stream:
                async for _ in router.stream(prompt, "ctx-model", max_tokens=max_tokens):
                    pass
            else:
                await router.complete(prompt, "ctx-model", max_tokens=max_tokens)

        try:
            runner.run(call())
            assert needed <= window
            assert len(server.requests) == before + 1
            outcomes["fits: answered"] += 1
        except ContextLengthExceededError as exc:
            assert needed > window, (needed, window)
            assert len(server.requests) == before  # refused before any HTTP call
            assert f"context window {window}" in str(exc)
            outcomes["too long: refused before HTTP"] += 1
        finally:
            runner.run(router.aclose())

    run()
    # A real model's window (gpt-4o-mini: 128k tokens) and a ~700k-character prompt.
    router = LLMRouter(
        {"openai": {"api_key": KEY, "base_url": server.base_url, "models": ["gpt-4o-mini"]}}
    )
    before = len(server.requests)
    huge = "lorem ipsum dolor sit amet " * 26_000
    for call in (
        lambda: router.complete(huge, "gpt-4o-mini"),
        lambda: _drain(router.stream(huge, "gpt-4o-mini")),
    ):
        with pytest.raises(ContextLengthExceededError):
            runner.run(call())
    assert len(server.requests) == before
    runner.run(router.aclose())
    assert outcomes["fits: answered"] > 5 and outcomes["too long: refused before HTTP"] > 5
    print(
        f"\n[fuzz/oversized] {sum(outcomes.values())} prompts against windows of 16..3000 tokens: "
        f"{dict(outcomes)}; a {len(huge)}-char prompt to gpt-4o-mini (128k) refused for complete "
        f"and stream with 0 HTTP calls"
    )


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass
