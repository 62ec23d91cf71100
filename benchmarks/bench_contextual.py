"""Multi-turn isolation on MeanCache's contextual queries: a follow-up must not get an answer given
in another conversation, nor another question's answer.

``../shared/datasets/meancache_contextual_queries.json`` holds 128 conversations of two turns
(main query, its response, follow-up query, its response). Every conversation is cached as a
chat would cache it: the main query as a first turn, the follow-up after the main query and its
response. Then three kinds of lookups:

* **replay**: each follow-up after its own conversation (the answer it should get);
* **other conversation**: each follow-up after ``--contexts`` other conversations' first turn
  (nothing cached fits: any answer served comes from another conversation);
* **first turn**: each follow-up asked with no earlier turns.

A served answer is classed as *another conversation's* when the earlier turns of the entry differ
from the lookup's (right for a self-contained follow-up, wrong for "What were its key
provisions?"), and as *another question's* when the earlier turns are the same but the question
differs (a semantic hit: right for a paraphrase, wrong otherwise). Compared, in one run, with GPTCache's default pipeline (``init_similar_cache``,
SBERT on the same local MiniLM as ``bench_quality_gptcache.py``) under its two pre-processors for
chat: ``last_content`` (the OpenAI adapter's default) and ``concat_all_queries`` (its multi-turn
option, with ``Config(context_len=2)``, which covers whole conversations here; it skips the
assistant's turns by default). Ours is the router's cache as configured by default (``CacheConfig()``, the guard, the
real ``SentenceEncoder``). Writes ``benchmarks/results/contextual.json``.

    python benchmarks/bench_contextual.py [--contexts 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import SHARED, write_result

from llm_cache_router_integrations.cache import CacheConfig, CacheEngine
from llm_cache_router_integrations.types import ChatRequest, LLMResponse

DATASET = "meancache_contextual_queries.json"
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Conversation:
    """One conversation of the dataset: two user turns and their responses."""

    main: str
    main_answer: str
    follow_up: str
    follow_up_answer: str

    def first_turn(self) -> Messages:
        return [{"role": "user", "content": self.main}]

    def history(self) -> Messages:
        return [*self.first_turn(), {"role": "assistant", "content": self.main_answer}]


@dataclass(frozen=True)
class Lookup:
    """One lookup: its kind (replay, other conversation, first turn) and the messages sent."""

    kind: str
    messages: Messages


def load(shared: Path) -> list[Conversation]:
    rows = json.loads((shared / DATASET).read_text(encoding="utf-8"))
    return [
        Conversation(
            r["Main Query"],
            r["Main Query Response"],
            r["Follow-Up Query"],
            r["Follow Up Query Response"],
        )
        for r in rows
    ]


def stored(conversations: list[Conversation]) -> list[tuple[Messages, str]]:
    """What a chat caches: each first turn and each follow-up, with its answer."""
    out: list[tuple[Messages, str]] = []
    for c in conversations:
        out.append((c.first_turn(), c.main_answer))
        out.append(([*c.history(), {"role": "user", "content": c.follow_up}], c.follow_up_answer))
    return out


def lookups(conversations: list[Conversation], contexts: int) -> list[Lookup]:
    """Replays, follow-ups after other conversations (the next ``contexts`` with another history)
    and follow-ups as first turns."""
    out: list[Lookup] = []
    n = len(conversations)
    for i, c in enumerate(conversations):
        ask = {"role": "user", "content": c.follow_up}
        out.append(Lookup("replay", [*c.history(), ask]))
        others = [
            other.history()
            for other in (conversations[(i + step) % n] for step in range(1, n))
            if other.history() != c.history()
        ][:contexts]
        out.extend(Lookup("other conversation", [*history, ask]) for history in others)
        out.append(Lookup("first turn", [ask]))
    return out


def classify(served: Messages | None, lookup: Lookup) -> str:
    """``miss``; ``other conversation`` (the entry's earlier turns differ from the lookup's);
    ``own`` (the very entry asked for) or ``other question`` (same earlier turns, another
    question: a semantic hit, right for a paraphrase)."""
    if served is None:
        return "miss"
    if served[:-1] != lookup.messages[:-1]:
        return "other conversation"
    return "own" if served[-1]["content"] == lookup.messages[-1]["content"] else "other question"


def ours(conversations: list[Conversation], queries: list[Lookup]) -> list[str]:
    """The router's cache engine with its defaults; the answer's text names the entry served."""
    entries = stored(conversations)

    def request(messages: Messages) -> ChatRequest:
        return ChatRequest.model_validate({"model": "gpt-4o-mini", "messages": messages})

    async def run() -> list[str]:
        engine = CacheEngine(CacheConfig())
        for row, (messages, _) in enumerate(entries):
            answer = LLMResponse(content=str(row), provider_used="p", model_used="gpt-4o-mini")
            await engine.store(request(messages), answer)
        out = []
        for lookup in queries:
            hit = await engine.lookup(request(lookup.messages))
            served = None if hit is None else entries[int(hit.entry.response.content or -1)][0]
            out.append(classify(served, lookup))
        await engine.aclose()
        return out

    return asyncio.run(run())


def gptcache(
    conversations: list[Conversation], queries: list[Lookup], preprocess: str
) -> list[str]:
    """GPTCache's default pipeline, keyed by its ``preprocess`` function of the chat messages."""
    from bench_quality_gptcache import GPTCacheDefault, embed
    from gptcache import Config
    from gptcache.processor import pre

    function = getattr(pre, preprocess)
    config = Config(context_len=2)  # concat_all_queries needs it: the last 2 x 2 messages, all here

    def key(messages: Messages) -> str:
        return str(function({"messages": messages}, cache_config=config))

    entries = stored(conversations)
    keys = [key(messages) for messages, _ in entries]
    asked = [key(lookup.messages) for lookup in queries]
    embed(list(dict.fromkeys([*keys, *asked])))
    cache = GPTCacheDefault()
    for row, text in enumerate(keys):
        cache.put(text, str(row))
    out = []
    for lookup, text in zip(queries, asked, strict=True):
        answer = cache.get(text)
        out.append(classify(None if answer is None else entries[int(answer)][0], lookup))
    cache.close()
    return out


def tally(kinds: list[str], queries: list[Lookup]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for lookup, kind in zip(queries, kinds, strict=True):
        counts.setdefault(lookup.kind, Counter())[kind] += 1
    return {
        kind: {
            "lookups": sum(c.values()),
            **{k: c[k] for k in ("own", "other question", "other conversation", "miss")},
        }
        for kind, c in counts.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED, help="datasets folder")
    parser.add_argument(
        "--contexts", type=int, default=16, help="other conversations per follow-up"
    )
    args = parser.parse_args(argv)
    logging.getLogger("gptcache").setLevel(logging.ERROR)
    started = time.perf_counter()
    conversations = load(args.shared)
    queries = lookups(conversations, args.contexts)
    systems: dict[str, list[str]] = {"ours (CacheConfig defaults)": ours(conversations, queries)}
    for preprocess in ("last_content", "concat_all_queries"):
        systems[f"GPTCache, {preprocess}"] = gptcache(conversations, queries, preprocess)
    result: dict[str, Any] = {
        "conversations": len(conversations),
        "contexts_per_follow_up": args.contexts,
        "systems": {name: tally(kinds, queries) for name, kinds in systems.items()},
    }
    print(f"\n### Contextual follow-ups ({len(conversations)} MeanCache conversations)\n")
    print("| system | lookups | own answer | another question's | another conversation's | miss |")
    print("|---|---|---:|---:|---:|---:|")
    for name, by_kind in result["systems"].items():
        for kind, c in by_kind.items():
            print(
                f"| {name} | {kind} ({c['lookups']}) | {c['own']} | {c['other question']} "
                f"| {c['other conversation']} | {c['miss']} |"
            )
    write_result("contextual", result, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
