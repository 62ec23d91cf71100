"""The cache engine with the real MiniLM encoder: exact, semantic, guard, scope, policy, outages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm_cache_router_integrations.cache import CacheConfig, CacheEngine
from llm_cache_router_integrations.cache.backends import MemoryBackend, SQLiteBackend
from llm_cache_router_integrations.cache.embeddings import HashingEncoder, SentenceEncoder
from llm_cache_router_integrations.cache.entry import MAX_ENTRY_BYTES
from llm_cache_router_integrations.cache.scope import cache_key, fingerprint
from llm_cache_router_integrations.types import ChatRequest, ContentBlock, Message, TextBlock
from llm_cache_router_integrations.types.messages import ImageURL, ImageURLBlock

from .helpers import answer, ask


@pytest.fixture
def engine(sentence_encoder: Any) -> CacheEngine:
    return CacheEngine(CacheConfig(), encoder=sentence_encoder)


async def test_exact_hit_needs_no_embedding(engine: CacheEngine, sentence_encoder: Any) -> None:
    await engine.store(ask("What is the capital of France?"), answer("Paris."), cost_usd=0.001)
    encoded = sentence_encoder.stats().requests
    hit = await engine.lookup(ask("What is the capital of France?"))
    assert hit is not None and hit.kind == "exact" and hit.entry.response.content == "Paris."
    assert sentence_encoder.stats().requests == encoded
    assert engine.stats.snapshot()["saved_cost_usd"] == pytest.approx(0.001)


async def test_paraphrase_hits_and_near_misses_do_not(engine: CacheEngine) -> None:
    await engine.store(ask("What is the capital of France?"), answer("Paris."))
    await engine.store(ask("How do I convert 5 kilometers to miles?"), answer("5 km = 3.11 miles"))
    await engine.store(ask("Is coffee good for your health?"), answer("In moderation, yes."))
    hit = await engine.lookup(ask("What's the capital of France?"))
    assert hit is not None and hit.kind == "semantic" and hit.entry.response.content == "Paris."
    for near_miss in (
        "What is the capital of Germany?",  # entity
        "How do I convert 50 kilometers to miles?",  # number
        "How do I convert 5 miles to kilometers?",  # direction
        "Is coffee bad for your health?",  # polarity
    ):
        assert await engine.lookup(ask(near_miss)) is None, near_miss
    snapshot = engine.stats.snapshot()
    assert snapshot["semantic_hits"] == 1 and snapshot["guard_rejections"] >= 1
    print(f"engine stats: {snapshot}")


CARPET = "How do I remove a stain from a carpet?"
CARPET_CACHED = ("How do I get a stain out of a carpet?", "How can I remove stains from carpet?")
"""Both cached questions are within 0.02 cosine of ``CARPET`` (0.958 and 0.945) and pass the guard."""


async def test_a_query_between_two_different_answers_is_a_miss(sentence_encoder: Any) -> None:
    engine = CacheEngine(CacheConfig(), encoder=sentence_encoder)
    for i, cached in enumerate(CARPET_CACHED):
        await engine.store(ask(cached), answer(f"answer {i}"))
    assert await engine.lookup(ask(CARPET)) is None
    snapshot = engine.stats.snapshot()
    assert snapshot["ambiguous_rejections"] == 2 and snapshot["semantic_hits"] == 0
    # A clear nearest neighbour is still served: the runner-up is 0.105 further away.
    await engine.store(ask("How can I extend the battery life of my laptop?"), answer("battery"))
    await engine.store(ask("How do I make my laptop battery last longer?"), answer("other"))
    hit = await engine.lookup(ask("How do I extend my laptop battery life?"))
    assert hit is not None and hit.entry.response.content == "battery"


async def test_near_entries_with_the_same_answer_are_not_ambiguous(sentence_encoder: Any) -> None:
    engine = CacheEngine(CacheConfig(), encoder=sentence_encoder)
    for cached in CARPET_CACHED:
        await engine.store(ask(cached), answer("Blot it, then use cold water and dish soap."))
    hit = await engine.lookup(ask(CARPET))
    assert hit is not None and hit.entry.query == CARPET_CACHED[0]
    assert engine.stats.snapshot()["ambiguous_rejections"] == 0


async def test_ambiguity_margin_zero_serves_the_nearest(sentence_encoder: Any) -> None:
    engine = CacheEngine(CacheConfig(ambiguity_margin=0), encoder=sentence_encoder)
    for i, cached in enumerate(CARPET_CACHED):
        await engine.store(ask(cached), answer(f"answer {i}"))
    hit = await engine.lookup(ask(CARPET))
    assert hit is not None and hit.entry.response.content == "answer 0"


async def test_scope_is_a_hard_filter(engine: CacheEngine) -> None:
    await engine.store(ask("Summarise the French revolution", temperature=0), answer("..."))
    same = ask("Summarise the French revolution", temperature=0)
    assert await engine.lookup(same) is not None
    for other in (
        ask("Summarise the French revolution", temperature=0.2),
        ask("Summarise the French revolution", temperature=0, max_tokens=50),
        ChatRequest.model_validate(
            {
                "model": "gpt-4o",
                "temperature": 0,
                "messages": [{"role": "user", "content": "Summarise the French revolution"}],
            }
        ),
        ask(
            "",
            temperature=0,
            messages=[
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": "Summarise the French revolution"},
            ],
        ),
        ask(
            "",
            temperature=0,
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Summarise the French revolution"},
            ],
        ),
    ):
        assert await engine.lookup(other) is None
    assert await engine.lookup(same, namespace="tenant-b") is None


async def test_policy_only_caches_complete_deterministic_answers(engine: CacheEngine) -> None:
    assert not await engine.store(ask("Write a poem", temperature=0.9), answer("roses"))
    cut = answer("half a poem").model_copy(update={"finish_reason": "length"})
    assert not await engine.store(ask("Write a poem", temperature=0), cut)
    assert not await engine.store(ask("Write a poem", temperature=0), answer(""))
    assert await engine.store(ask("Write a poem", temperature=0), answer("roses are red"))
    explicit = CacheEngine(CacheConfig(max_temperature=1.0), encoder=engine.encoder)
    assert await explicit.store(ask("Write a poem", temperature=0.9), answer("roses"))


async def test_media_enters_the_key_as_a_fingerprint(engine: CacheEngine) -> None:
    def with_image(data: str) -> ChatRequest:
        return ask(
            "",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{data}"},
                        },
                    ],
                }
            ],
        )

    await engine.store(with_image("AAAA" * 1000), answer("A cat."))
    assert (await engine.lookup(with_image("AAAA" * 1000))) is not None
    assert (await engine.lookup(with_image("BBBB" * 1000))) is None  # same words, other image
    entry = next(iter([e async for e, _ in engine.backend.entries()]))
    assert "AAAA" not in entry.scope + entry.exact + entry.query


async def test_backend_outage_is_a_counted_miss(sentence_encoder: Any) -> None:
    class Broken(MemoryBackend):
        async def get(self, exact: str) -> Any:
            raise ConnectionError("backend down")

        async def put(self, entry: Any, vector: Any = None) -> None:
            raise ConnectionError("backend down")

    engine = CacheEngine(CacheConfig(), backend=Broken(), encoder=sentence_encoder)
    assert not await engine.store(ask("hello"), answer("hi"))
    assert await engine.lookup(ask("hello")) is None
    snapshot = engine.stats.snapshot()
    assert snapshot["errors"] == 2 and snapshot["misses"] == 1


async def test_export_import_jsonl(
    engine: CacheEngine, sentence_encoder: Any, tmp_path: Path
) -> None:
    for i in range(5):
        await engine.store(ask(f"Question number {i} about caching"), answer(f"answer {i}"))
    path = tmp_path / "cache.jsonl"
    assert await engine.export_jsonl(path) == 5
    with path.open("a") as handle:
        handle.write('{"entry": {"exact": 1}}\n')  # a malformed line is skipped, not loaded
    fresh = CacheEngine(CacheConfig(), encoder=sentence_encoder)
    assert await fresh.import_jsonl(path) == (5, 1)
    hit = await fresh.lookup(ask("Question number 3 about caching"))
    assert hit is not None and hit.entry.response.content == "answer 3"


async def test_invalidate_and_clear(engine: CacheEngine) -> None:
    await engine.store(ask("weather in Paris"), answer("sunny"))
    await engine.store(ask("weather in Rome"), answer("rainy"))
    await engine.store(ask("stock price of ACME"), answer("42"), namespace="finance")
    assert await engine.invalidate(pattern="weather in P*") == 1
    assert await engine.lookup(ask("weather in Paris")) is None
    assert await engine.invalidate(namespace="finance") == 1
    await engine.clear()
    assert await engine.size() == 0


# -- keys of media messages, export/import, oversized entries, closing --------------------------


def test_text_only_keys_are_unchanged() -> None:
    """Persisted keys of plain-text conversations keep hitting (values computed before 0.x
    changed how media messages are keyed)."""
    plain = cache_key(ask("What is the capital of France?", temperature=0), "ns")
    assert plain.scope == "e5388197ecdee1c85b690a847e4e1d4b64942557b0dd574fdf7294241549eac6"
    assert plain.exact == "02eac7e9b1c5f37c5a762fa8fda2703c6af0c4f78f7ae2221b0857e0c3014c55"
    conversation = ask(
        "",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is "},
                    {"type": "text", "text": "HTTP?"},
                ],
            },
        ],
        max_tokens=50,
    )
    key = cache_key(conversation, "ns")
    assert key.scope == "42efe27ef570dde96746f7e584bb26a319a53bc605401af796a701a32580a9fa"
    assert key.exact == "304e9d493bb462cb9ee7cfd1fffcf0afc03429de45fdb54af61cc54513257c7c"


def test_parallel_tool_calls_keys() -> None:
    """Without ``parallel_tool_calls`` a request keeps its key; with it, the key is the one it had
    in ``extra`` (values computed before the field existed), and each value has its own scope."""
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    tools: dict[str, Any] = {"tools": [weather], "tool_choice": "auto"}
    unset = cache_key(ask("Weather in Paris?", **tools), "ns")
    assert unset.scope == "e7f81302df265f7bc3c1e54dbf5a8d90b5fdbe1d158b4cf8596701495f91cfc7"
    assert unset.exact == "053085cfb435de2877ea35f4beb565aa2a288d8d60cc19457315f7930bd0ca32"
    single = cache_key(ask("Weather in Paris?", parallel_tool_calls=False, **tools), "ns")
    assert single.scope == "f4e34a9e3206876782acfd0b7b0de8a466a67124f1219d5d045e2d51c0658c10"
    assert single.exact == "05ea197b93dd8d5bb4bbebfc747e7ddefdbb3f565a8aa7961382c8150953728e"
    in_extra = ask("Weather in Paris?", extra={"parallel_tool_calls": False}, **tools)
    assert cache_key(in_extra, "ns") == single
    several = cache_key(ask("Weather in Paris?", parallel_tool_calls=True, **tools), "ns")
    assert len({unset.scope, single.scope, several.scope}) == 3


async def test_a_request_allowing_parallel_calls_misses_one_that_forbade_them(
    engine: CacheEngine,
) -> None:
    weather = {"type": "function", "function": {"name": "get_weather"}}
    forbidden = ask("Weather in Paris and Rome?", tools=[weather], parallel_tool_calls=False)
    await engine.store(forbidden, answer("One call."))
    assert await engine.lookup(forbidden) is not None
    allowed = forbidden.model_copy(update={"parallel_tool_calls": None})
    assert await engine.lookup(allowed) is None


async def test_a_text_cannot_take_the_key_of_an_image() -> None:
    image = ImageURLBlock(image_url=ImageURL(url="https://example.com/cat.png"))
    marker = fingerprint(image)

    def request(*blocks: ContentBlock) -> ChatRequest:
        return ChatRequest(model="m", messages=[Message(role="user", content=list(blocks))])

    question = TextBlock(text="What is this?")
    with_image = request(image, question)
    with_text = request(TextBlock(text=marker), question)
    assert cache_key(with_image).exact != cache_key(with_text).exact
    engine = CacheEngine(CacheConfig(semantic=False), guard=False)
    assert await engine.store(with_text, answer("A text that looks like a hash."))
    assert await engine.lookup(with_image) is None
    assert await engine.store(with_image, answer("A cat."))
    hit = await engine.lookup(with_image)
    assert hit is not None and hit.entry.response.content == "A cat."


async def test_export_import_keeps_unicode_line_separators(tmp_path: Path) -> None:
    texts = {
        "What is the refund policy?": "30 days.\u2028Receipt required.",
        "Opening hours?": "9-5\u2029Closed on Sundays.",
        "Caf\u0085 menu?": "Coffee",
    }
    source = CacheEngine(CacheConfig(), encoder=HashingEncoder(dim=64), guard=False)
    for question, text in texts.items():
        assert await source.store(ask(question, temperature=0), answer(text))
    path = tmp_path / "cache.jsonl"
    assert await source.export_jsonl(path) == 3
    written = path.read_text(encoding="utf-8")
    assert not {"\u2028", "\u2029", "\x85"} & set(written)  # escaped, safe for any line reader
    # Files written before these were escaped hold them raw: they load too.
    raw = tmp_path / "raw.jsonl"
    raw.write_text(
        written.replace("\\u2028", "\u2028")
        .replace("\\u2029", "\u2029")
        .replace("\\u0085", "\x85"),
        encoding="utf-8",
    )
    assert "\u2028" in raw.read_text(encoding="utf-8")
    for file in (path, raw):
        target = CacheEngine(CacheConfig(), encoder=HashingEncoder(dim=64), guard=False)
        assert await target.import_jsonl(file) == (3, 0)
        for question, text in texts.items():
            hit = await target.lookup(ask(question, temperature=0))
            assert hit is not None and hit.entry.response.content == text


async def test_import_skips_lines_with_bad_vectors(tmp_path: Path) -> None:
    source = CacheEngine(CacheConfig(), encoder=HashingEncoder(dim=64), guard=False)
    questions = [f"question {name} about the cache" for name in ("a", "b", "c", "d", "e")]
    for question in questions:
        await source.store(ask(question, temperature=0), answer("yes"))
    path = tmp_path / "cache.jsonl"
    assert await source.export_jsonl(path) == 5
    lines = path.read_text(encoding="utf-8").splitlines()
    # zero, not finite, and (once the first lines set the backend's dimension) another dimension
    bad_vectors: list[Any] = [[0.0] * 64, [float("nan")] * 64, [1.0] * 32]
    for index, vector in enumerate(bad_vectors, start=2):
        data = json.loads(lines[index])
        data["vector"] = vector
        lines[index] = json.dumps(data)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = CacheEngine(CacheConfig(), encoder=HashingEncoder(dim=64), guard=False)
    assert await target.import_jsonl(path) == (2, 3)
    assert await target.size() == 2
    assert await target.lookup(ask(questions[1], temperature=0)) is not None


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_an_oversized_answer_is_refused_up_front(kind: str, tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "c.sqlite3") if kind == "sqlite" else MemoryBackend()
    engine = CacheEngine(CacheConfig(semantic=False), backend, guard=False)
    request = ask("Write the long report", temperature=0)
    assert not await engine.store(request, answer("x" * (MAX_ENTRY_BYTES + 1)))
    assert await engine.size() == 0
    snapshot = engine.stats.snapshot()
    assert snapshot["stores"] == 0 and snapshot["errors"] == 0
    # multi-byte text counts in UTF-8 bytes, as the backends read it back
    assert not await engine.store(request, answer("\u00e9" * (MAX_ENTRY_BYTES // 2 + 1)))
    assert await engine.store(request, answer("x" * (MAX_ENTRY_BYTES - 2_000)))
    hit = await engine.lookup(request)
    assert hit is not None and len(hit.entry.response.content or "") == MAX_ENTRY_BYTES - 2_000
    await engine.aclose()


async def test_aclose_leaves_a_shared_encoder_open() -> None:
    encoder = SentenceEncoder()  # not loaded: the model loads on the first embedding
    first = CacheEngine(CacheConfig(), encoder=encoder, guard=False)
    second = CacheEngine(CacheConfig(), encoder=encoder, guard=False)
    await first.aclose()
    assert not encoder.closed and second.encoder is encoder
    await second.aclose()
    assert not encoder.closed
    await encoder.aclose()


def test_cache_config_repr_hides_the_server_url() -> None:
    """A Redis URL may carry a password: the config's repr (as logged or printed) leaves it out."""
    config = CacheConfig(backend="redis", url="redis://:s3cret@127.0.0.1:6379/0")
    assert "s3cret" not in repr(config) and "s3cret" not in str(config)
    assert config.url == "redis://:s3cret@127.0.0.1:6379/0"
