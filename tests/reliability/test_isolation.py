"""Isolation: no cache hit ever crosses a namespace (tenant) or a model, on every backend; and
nothing read back from a backend is unpickled or evaluated (a malicious entry is a miss).

``tests/cache/test_backend_contract.py`` already checks that a backend's ``search`` never returns
another scope's vectors (50 raw scope strings, random vectors). These tests go through the
:class:`CacheEngine` as the router does, so the scope is *computed* from namespace and model, the
exact layer and the semantic layer (with the guard) both run, and the strongest temptation is
built in: the same question, with the same vector, is stored in every scope with a
scope-specific answer.
"""

from __future__ import annotations

import ast
import asyncio
import json
import pickle
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import llm_cache_router_integrations
from llm_cache_router_integrations import CacheConfig, LLMRouter
from llm_cache_router_integrations.cache import CacheEngine, CacheEntry
from llm_cache_router_integrations.cache.embeddings import HashingEncoder
from llm_cache_router_integrations.cache.entry import MAX_ENTRY_BYTES
from llm_cache_router_integrations.types import ChatRequest, LLMResponse, Usage

from ._backends import BACKENDS, make_backend, redis_url_for, write_raw

NAMESPACES = [f"tenant-{i:02d}" for i in range(50)]
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku-latest", "gemini-2.0-flash", "qwen-plus"]
SHARED = "What is the capital of France?"  # stored in every scope
EVEN_ONLY = "How many moons does Jupiter have?"  # stored in even tenants only
UNSEEN = [
    "Explain the rules of chess in two sentences.",
    "How many moons does Saturn have?",
    "What is the capital of Spain?",
    "Translate 'good morning' into German.",
]
LOOKUPS = 10_000


def request_for(question: str, model: str) -> ChatRequest:
    return LLMRouter.build_request(question, model, temperature=0)


def answer_for(namespace: str, model: str, question: str) -> LLMResponse:
    return LLMResponse(
        content=f"[{namespace}|{model}] {question}",
        provider_used="test",
        model_used=model,
        usage=Usage.of(12, 8),
    )


@pytest.fixture(params=BACKENDS)
async def engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, CacheEngine]]:
    kind = str(request.param)
    backend = make_backend(kind, tmp_path, redis_url_for(kind, request), dim=128)
    cache = CacheEngine(CacheConfig(max_entries=None), backend, encoder=HashingEncoder(dim=128))
    yield kind, cache
    await cache.aclose()


async def test_no_cross_scope_hits_over_10k_lookups(engine: tuple[str, CacheEngine]) -> None:
    kind, cache = engine
    started = time.perf_counter()
    stored = 0
    for n, namespace in enumerate(NAMESPACES):
        for model in MODELS:
            questions = [SHARED, EVEN_ONLY] if n % 2 == 0 else [SHARED]
            for question in questions:
                response = answer_for(namespace, model, question)
                ok = await cache.store(
                    request_for(question, model), response, cost_usd=0.001, namespace=namespace
                )
                assert ok
                stored += 1
    assert await cache.size() == stored

    rng = random.Random(9)
    outcomes: Counter[str] = Counter()
    cross: list[tuple[str, str, str]] = []

    async def lookup(_: int) -> None:
        n = rng.randrange(len(NAMESPACES))
        namespace, model = NAMESPACES[n], rng.choice(MODELS)
        roll = rng.random()
        if roll < 0.3:
            kind_, question = "shared-exact", SHARED
        elif roll < 0.45:
            kind_, question = "shared-paraphrase", SHARED.lower().rstrip("?")
        elif roll < 0.75:
            kind_, question = "even-only", EVEN_ONLY
        elif roll < 0.85:
            kind_, question = "even-only-paraphrase", EVEN_ONLY.lower().rstrip("?")
        else:
            kind_, question = "unseen", rng.choice(UNSEEN)
        request = request_for(question, model)
        hit = await cache.lookup(request, namespace=namespace)
        if hit is None:
            outcomes[f"{kind_}:miss"] += 1
            return
        outcomes[f"{kind_}:{hit.kind}"] += 1
        entry = hit.entry
        expected_scope = cache.key(request, namespace).scope
        if (
            entry.namespace != namespace
            or entry.scope != expected_scope
            or entry.response.model_used != model
            or not (entry.response.content or "").startswith(f"[{namespace}|{model}] ")
        ):
            cross.append((namespace, model, entry.response.content or ""))

    for start in range(0, LOOKUPS, 100):
        await asyncio.gather(*(lookup(i) for i in range(start, start + 100)))

    total = sum(outcomes.values())
    hits = sum(v for k, v in outcomes.items() if not k.endswith(":miss"))
    assert total == LOOKUPS
    assert cross == [], cross[:5]
    # Every exact question stored in the scope is found; a question stored only in *other*
    # tenants' scopes (same text, same vector) never is.
    assert outcomes["shared-exact:exact"] > 0 and outcomes["shared-exact:miss"] == 0
    assert outcomes["shared-exact:semantic"] == 0
    even_only_hits = sum(
        v for k, v in outcomes.items() if k.startswith("even-only") and not k.endswith(":miss")
    )
    stats = cache.stats.snapshot()
    assert stats["hits"] == hits and stats["misses"] == LOOKUPS - hits
    assert stats["errors"] == 0
    assert outcomes["shared-paraphrase:semantic"] > 0  # the semantic layer ran and hit
    elapsed = time.perf_counter() - started
    print(
        f"\n[isolation/{kind}] {stored} entries in {len(NAMESPACES)} tenants x {len(MODELS)} "
        f"models; {total} lookups: {hits} hits ({outcomes['shared-exact:exact']} exact shared, "
        f"{outcomes['shared-paraphrase:semantic']} semantic paraphrase, {even_only_hits} even-only), "
        f"{LOOKUPS - hits} misses, cross-scope hits: {len(cross)} ({elapsed:.1f}s)"
    )
    await _check_even_only_never_crosses(cache)


async def _check_even_only_never_crosses(cache: CacheEngine) -> None:
    """The question stored only for even tenants: every odd tenant misses, every even one hits."""
    for n, namespace in enumerate(NAMESPACES):
        hit = await cache.lookup(request_for(EVEN_ONLY, MODELS[n % 5]), namespace=namespace)
        if n % 2:
            assert hit is None, (namespace, hit)
        else:
            assert hit is not None and hit.entry.namespace == namespace


# -- nothing unpickled or evaluated --------------------------------------------------------------


class _Payload:
    """Unpickling this creates a marker file: proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.touch, (self.marker,))


def _valid_json(exact: str, scope: str, **changes: object) -> dict[str, object]:
    entry = CacheEntry(
        exact=exact,
        scope=scope,
        query="What is the capital of France?",
        response=LLMResponse(content="Paris", provider_used="p", model_used="m"),
        cost_usd=0.001,
    )
    data: dict[str, object] = json.loads(entry.to_json())
    data.update(changes)
    return data


RELABELLED = {"other-scope", "other-key"}


def _replaced(data: dict[str, object], field: str, value: str) -> str:
    """Compact JSON of ``data`` with ``field`` (``'"name":old'``) given the raw ``value``."""
    text = json.dumps(data, separators=(",", ":"))
    assert field in text
    return text.replace(field, field.split(":")[0] + ":" + value)


def _malicious(marker: Path, exact: str, scope: str, other_scope: str) -> dict[str, str | bytes]:
    """Crafted payloads an attacker with write access to the store could plant."""
    eval_bait = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    nested = "[" * 200_000 + "]" * 200_000
    return {
        "pickle": pickle.dumps(_Payload(marker), protocol=pickle.HIGHEST_PROTOCOL),
        "pickle-in-json": json.dumps(
            _valid_json(exact, scope, response=pickle.dumps(_Payload(marker)).hex())
        ),
        "eval-bait-as-json-value": json.dumps(_valid_json(exact, scope, cost_usd=eval_bait)),
        "eval-bait-as-document": eval_bait,
        "extra-field": json.dumps(_valid_json(exact, scope, __reduce__=eval_bait)),
        "other-scope": json.dumps(_valid_json(exact, other_scope)),
        "other-key": json.dumps(_valid_json("some-other-exact-key", scope)),
        "non-finite-cost": _replaced(_valid_json(exact, scope), '"cost_usd":0.001', "1e999"),
        "nan-expiry": _replaced(_valid_json(exact, scope), '"expires_at":null', "NaN"),
        "oversized": json.dumps(
            _valid_json(
                exact,
                scope,
                response={
                    "content": "x" * (MAX_ENTRY_BYTES + 10),
                    "provider_used": "p",
                    "model_used": "m",
                },
            )
        ),
        "deeply-nested": nested,
        "wrong-types": json.dumps({"exact": 1, "scope": [], "query": {}, "response": "Paris"}),
        "invalid-utf8": b'{"exact": "\xff\xfe", "query": "\xc3\x28"}',
        "empty": "",
        "json-null": "null",
    }


@pytest.mark.parametrize("kind", BACKENDS)
async def test_malicious_entries_are_misses_never_unpickled(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    backend = make_backend(kind, tmp_path, redis_url_for(kind, request), dim=128)
    cache = CacheEngine(CacheConfig(max_entries=None), backend, encoder=HashingEncoder(dim=128))
    marker = tmp_path / "unpickled-or-evaluated"
    try:
        victim = request_for("What is the capital of Germany?", MODELS[1])
        victim_key = cache.key(victim, "victim")
        names = list(_malicious(marker, "x", "y", "z"))
        requests = {
            name: request_for(f"Question number {i} about {name}", MODELS[0])
            for i, name in enumerate(names)
        }
        # Planted under the attacker's key for the victim's very question (same vector), its JSON
        # claiming the victim's scope: it must never reach the victim.
        requests["other-scope"] = request_for("What is the capital of Germany?", MODELS[0])
        control = request_for("What is the capital of Italy?", MODELS[0])
        for req in [*requests.values(), control, victim]:
            namespace = "victim" if req is victim else "attacker"
            response = LLMResponse(content="genuine", provider_used="p", model_used=req.model)
            assert await cache.store(req, response, namespace=namespace)
        for name, req in requests.items():
            key = cache.key(req, "attacker")
            payloads = _malicious(marker, key.exact, key.scope, victim_key.scope)
            await write_raw(backend, key.exact, payloads[name])

        served: dict[str, str] = {}
        relabelled = 0
        for name, req in requests.items():
            hit = await cache.lookup(req, namespace="attacker")
            if hit is not None and name in RELABELLED:
                # A well-formed entry whose JSON names another scope or key: a backend may keep
                # it (the scope and key it is filed under are its own) but only for that key.
                assert hit.entry.scope == cache.key(req, "attacker").scope
                relabelled += 1
            elif hit is not None:
                served[name] = hit.entry.response.content or ""
            # The victim's scope never sees a planted entry (exact or semantic).
            victim_hit = await cache.lookup(victim, namespace="victim")
            assert victim_hit is not None and victim_hit.entry.response.content == "genuine"
        exported = [entry async for entry, _ in backend.entries()]
        assert not marker.exists(), "a stored payload was unpickled or evaluated"
        assert served == {}, f"malicious entries served as hits: {sorted(served)}"
        control_hit = await cache.lookup(control, namespace="attacker")
        assert control_hit is not None and control_hit.entry.response.content == "genuine"
        assert {e.response.content for e in exported} <= {"genuine", "Paris"}
        assert sum(e.response.content == "Paris" for e in exported) <= len(RELABELLED)
        stats = cache.stats.snapshot()
        print(
            f"\n[malicious/{kind}] {len(names)} crafted entries ({', '.join(names)}): "
            f"0 served, 0 unpickled/evaluated, {relabelled} relabelled kept under their own key, "
            f"{stats['misses']} misses ({stats['errors']} backend errors), control and victim "
            f"entries intact; {len(exported)} valid entries left"
        )
    finally:
        await cache.aclose()


_UNSAFE_CALLS = {"eval", "exec", "__import__"}
_UNSAFE_ATTRS = {
    ("pickle", "loads"),
    ("pickle", "load"),
    ("pickle", "Unpickler"),
    ("marshal", "loads"),
    ("marshal", "load"),
    ("shelve", "open"),
    ("yaml", "load"),
    ("yaml", "unsafe_load"),
    ("dill", "loads"),
    ("cloudpickle", "loads"),
    ("jsonpickle", "decode"),
}


def test_source_never_unpickles_or_evaluates() -> None:
    """No module of the package calls eval/exec/pickle.loads/marshal/yaml.load/shelve.

    (Qdrant's *local mode* pickles points inside qdrant-client's own SQLite file; the backend's
    docs say to open only directories this application wrote. Every entry the backend reads back
    is still JSON validated as a :class:`CacheEntry`.)
    """
    root = Path(llm_cache_router_integrations.__file__).parent
    files = sorted(root.rglob("*.py"))
    findings = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names]
                module = getattr(node, "module", None) or ""
                if {"pickle", "marshal", "shelve", "dill", "cloudpickle"} & {
                    *names,
                    module,
                }:
                    findings.append(f"{path.relative_to(root)}:{node.lineno} imports {names}")
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in _UNSAFE_CALLS:
                findings.append(f"{path.relative_to(root)}:{node.lineno} calls {func.id}()")
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and (func.value.id, func.attr) in _UNSAFE_ATTRS
            ):
                findings.append(
                    f"{path.relative_to(root)}:{node.lineno} calls {func.value.id}.{func.attr}()"
                )
    assert findings == []
    print(f"\n[no-unpickle] scanned {len(files)} modules: 0 eval/exec/pickle/marshal/yaml.load")
