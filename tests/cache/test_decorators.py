"""The semantic-llm-cache decorator API: @cache, CachedLLM, get_stats, invalidate, clear_cache."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llm_cache_router_integrations.cache import CachedLLM, cache, clear_cache, get_stats, invalidate
from llm_cache_router_integrations.errors import ConfigurationError

calls: list[str] = []


@cache(similarity=0.85, ttl=60, namespace="decorator-sync")
def answer(prompt: str, style: str = "short") -> str:
    calls.append(prompt)
    return f"[{style}] answer to {prompt}"


@cache(namespace="decorator-async")
async def aanswer(prompt: str) -> str:
    calls.append(prompt)
    return f"async answer to {prompt}"


def test_sync_decorator_hits_on_paraphrase_and_scopes_arguments() -> None:
    calls.clear()
    first = answer("How do I reset my password?")
    assert answer("How do I reset my password?") == first
    assert answer("how can I reset my password") == first
    assert (
        answer("How do I reset my password?", style="long") != first
    )  # other arguments: other scope
    assert answer("How do I delete my account?") != first
    assert len(calls) == 3
    stats = get_stats("decorator-sync")
    assert stats["hits"] == 2 and stats["misses"] == 3


async def test_async_decorator_and_invalidate() -> None:
    calls.clear()
    await aanswer("What is the refund policy?")
    await aanswer("What is the refund policy?")
    assert len(calls) == 1
    assert invalidate(pattern="*refund*", namespace="decorator-async") == 1
    await aanswer("What is the refund policy?")
    assert len(calls) == 2
    clear_cache("decorator-async")
    assert get_stats("decorator-async")["hits"] == 1


def test_cached_llm_wraps_any_callable() -> None:
    seen: list[str] = []

    def fake_llm(prompt: str, temperature: float = 0.0) -> str:
        seen.append(prompt)
        return prompt.upper()

    llm = CachedLLM(fake_llm, namespace="cached-llm")
    assert llm("what time is it in Tokyo?") == "WHAT TIME IS IT IN TOKYO?"
    assert llm("what time is it in Tokyo?") == "WHAT TIME IS IT IN TOKYO?"
    assert llm("what time is it in Tokyo?", temperature=0.5) == "WHAT TIME IS IT IN TOKYO?"
    assert len(seen) == 2


def test_cached_llm_tells_partials_and_client_instances_apart() -> None:
    def call(prompt: str, model: str) -> str:
        return f"answer from {model}"

    gpt = CachedLLM(functools.partial(call, model="gpt-4o"), namespace="ident-llm", semantic=False)
    claude = CachedLLM(
        functools.partial(call, model="claude"), namespace="ident-llm", semantic=False
    )
    assert gpt("What is 2+2?") == "answer from gpt-4o"
    assert claude("What is 2+2?") == "answer from claude"

    class Client:
        def __init__(self, model: str) -> None:
            self.model = model
            self.calls = 0

        def __call__(self, prompt: str) -> str:
            self.calls += 1
            return f"answer from {self.model}"

    first, second, again = Client("model-A"), Client("model-B"), Client("model-A")
    assert CachedLLM(first, namespace="ident-llm", semantic=False)("hello") == "answer from model-A"
    assert (
        CachedLLM(second, namespace="ident-llm", semantic=False)("hello") == "answer from model-B"
    )
    # Same class, same model: the same configuration, so the entry is shared.
    assert CachedLLM(again, namespace="ident-llm", semantic=False)("hello") == "answer from model-A"
    assert (first.calls, second.calls, again.calls) == (1, 1, 0)

    class Anonymous:  # no model attribute: scoped to the instance
        def __init__(self, text: str) -> None:
            self.text = text

        def __call__(self, prompt: str) -> str:
            return self.text

    assert CachedLLM(Anonymous("x"), namespace="ident-llm", semantic=False)("hi") == "x"
    assert CachedLLM(Anonymous("y"), namespace="ident-llm", semantic=False)("hi") == "y"
    # name= says explicitly that two callables answer alike.
    assert CachedLLM(Anonymous("x"), namespace="ident-llm", name="shared", semantic=False)("hi")
    assert (
        CachedLLM(Anonymous("z"), namespace="ident-llm", name="shared", semantic=False)("hi") == "x"
    )


def test_closures_from_one_factory_do_not_share_entries() -> None:
    def make_asker(model: str) -> Callable[[str], str]:
        @cache(namespace="ident-closure", semantic=False)
        def ask(prompt: str) -> str:
            return f"{model} says hi"

        return ask

    ask_gpt, ask_claude, ask_gpt_again = (
        make_asker("gpt-4o"),
        make_asker("claude"),
        make_asker("gpt-4o"),
    )
    assert ask_gpt("hello") == "gpt-4o says hi"
    assert ask_claude("hello") == "claude says hi"
    assert ask_gpt_again("hello") == "gpt-4o says hi"
    assert get_stats("ident-closure")["hits"] == 1  # the same configuration shares its entry


def test_arguments_are_bound_to_the_signature() -> None:
    seen: list[tuple[str, str]] = []

    @cache(namespace="ident-bind", semantic=False)
    def write(topic: str = "", style: str = "plain") -> str:
        seen.append((topic, style))
        return f"text about {topic!r} in style {style!r}"

    assert write(style="haiku") == "text about '' in style 'haiku'"
    assert write("haiku") == "text about 'haiku' in style 'plain'"
    assert write("haiku", "plain") == "text about 'haiku' in style 'plain'"  # defaults applied
    assert write(topic="haiku") == "text about 'haiku' in style 'plain'"
    assert seen == [("", "haiku"), ("haiku", "plain")]

    @cache(namespace="ident-bind", semantic=False, prompt_arg="question")
    def ask(model: str, question: str) -> str:
        seen.append((model, question))
        return f"{model}: {question}"

    assert ask("a", "why?") == "a: why?"
    assert ask("b", "why?") == "b: why?"
    assert ask(question="why?", model="a") == "a: why?"
    assert len(seen) == 4

    with pytest.raises(ConfigurationError, match="prompt_arg"):
        cache(namespace="ident-bind", prompt_arg="missing")(ask)


def test_array_arguments_are_fingerprinted_and_opaque_ones_bypass() -> None:
    seen: list[int] = []

    @cache(namespace="ident-array", semantic=False)
    def answer(prompt: str, context: Any) -> str:
        seen.append(1)
        return f"sum of context = {int(np.asarray(context).sum())}"

    a = np.arange(2000)
    b = np.arange(2000)
    b[1000] = 10**6  # differs only where repr() would print "..."
    assert answer("Summarise the context", a) == "sum of context = 1999000"
    assert answer("Summarise the context", b) == f"sum of context = {int(b.sum())}"
    assert answer("Summarise the context", a.astype(np.int32)) == "sum of context = 1999000"
    assert answer("Summarise the context", np.arange(2000)) == "sum of context = 1999000"
    assert len(seen) == 3  # only the equal array (same bytes, dtype, shape) was a hit

    class Opaque:
        def __init__(self, values: list[int]) -> None:
            self.values = values

        def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
            return np.asarray(self.values)

    opaque = Opaque([1, 2])
    assert answer("Summarise the context", opaque) == "sum of context = 3"
    opaque.values = [5]
    assert answer("Summarise the context", opaque) == "sum of context = 5"  # never cached
    assert len(seen) == 5


def test_invalidate_and_clear_touch_only_their_namespace(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    calls: list[str] = []

    @cache(backend="sqlite", path=path, namespace="tenant-a", semantic=False)
    def ask_a(prompt: str) -> str:
        calls.append("a")
        return "A:" + prompt

    @cache(backend="sqlite", path=path, namespace="tenant-b", semantic=False)
    def ask_b(prompt: str) -> str:
        calls.append("b")
        return "B:" + prompt

    ask_a("q")
    ask_b("q")
    assert invalidate(namespace="tenant-a") == 1
    ask_a("q")
    ask_b("q")
    assert calls == ["a", "b", "a"]  # tenant-b kept its entry
    clear_cache("tenant-a")
    ask_a("q")
    ask_b("q")
    assert calls == ["a", "b", "a", "a"]


def test_get_stats_averages_latencies_weighted_by_lookups() -> None:
    @cache(similarity=0.9, namespace="stats-mean")
    def first(prompt: str) -> str:
        return "first: " + prompt

    @cache(similarity=0.95, namespace="stats-mean")
    def second(prompt: str) -> str:
        return "second: " + prompt

    for question in ("What is the capital of France?", "How tall is Mount Everest?"):
        first(question)
    second("Who wrote Hamlet?")
    engines = [first.cache_engine, second.cache_engine]  # type: ignore[attr-defined]
    assert engines[0] is not engines[1]
    weights = [e.stats.semantic_lookups for e in engines]
    assert weights == [2, 1]
    stats = get_stats("stats-mean")
    for key in ("mean_embed_ms", "mean_search_ms", "mean_guard_ms"):
        means = [e.stats.snapshot()[key] for e in engines]
        expected = (means[0] * weights[0] + means[1] * weights[1]) / sum(weights)
        assert stats[key] == pytest.approx(expected)
        assert min(means) <= stats[key] <= max(means)
    assert stats["misses"] == 3


_PERSISTED = """
import functools, sys
from llm_cache_router_integrations.cache import CachedLLM, cache

path, log = sys.argv[1], sys.argv[2]

def make(model):
    @cache(backend="sqlite", path=path, namespace="persist", semantic=False)
    def ask(prompt: str, tags: frozenset = frozenset({"x", "y", "z"})) -> str:
        open(log, "a").write("ask\\n")
        return model + ": " + prompt if prompt not in {"a", "b", "c"} else ""
    return ask

class Client:
    def __init__(self, model):
        self.model = model
    def __call__(self, prompt):
        open(log, "a").write("client\\n")
        return self.model + ": " + prompt

def call(prompt, model):
    open(log, "a").write("partial\\n")
    return model + ": " + prompt

print(make("gpt")("hello"))
print(CachedLLM(Client("m"), backend="sqlite", path=path, namespace="persist", semantic=False)("hi"))
print(CachedLLM(functools.partial(call, model="p"), backend="sqlite", path=path,
                namespace="persist", semantic=False)("hey"))
"""


def test_identities_are_stable_across_restarts(tmp_path: Path) -> None:
    script = tmp_path / "persisted.py"
    script.write_text(_PERSISTED)
    db, log = str(tmp_path / "c.sqlite3"), tmp_path / "calls.log"
    outputs = []
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, str(script), db, str(log)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] == "gpt: hello\nm: hi\np: hey\n"
    assert log.read_text().split() == ["ask", "client", "partial"]  # the second run only hit


def test_cache_on_methods_scopes_entries_by_instance() -> None:
    """``self`` is not the prompt; instances with another ``model`` never share entries."""
    calls: list[str] = []

    class Bot:
        def __init__(self, model: str) -> None:
            self.model = model

        @cache(similarity=0.99, namespace="methods-test")
        def ask(self, question: str) -> str:
            calls.append(self.model)
            return f"{self.model}: {question}"

    mini, large = Bot("mini"), Bot("large")
    assert mini.ask("What is the capital of France?") == "mini: What is the capital of France?"
    assert mini.ask("What is the capital of France?") == "mini: What is the capital of France?"
    assert Bot("mini").ask("What is the capital of France?").startswith("mini:")
    assert large.ask("What is the capital of France?") == "large: What is the capital of France?"
    assert calls == ["mini", "large"]
