"""The in-memory (FAISS) backend under the contract."""

from __future__ import annotations

from llm_cache_router_integrations.cache.backends import CacheBackend, MemoryBackend

from .backend_cases import BackendCase, BackendEnv


async def make(env: BackendEnv, max_entries: int | None, dim: int) -> CacheBackend:
    return MemoryBackend(max_entries=max_entries, dim=dim)


async def make_hnsw(env: BackendEnv, max_entries: int | None, dim: int) -> CacheBackend:
    # Every partition above 2 vectors is an HNSW graph (tombstones, rebuilds) instead of flat.
    return MemoryBackend(max_entries=max_entries, dim=dim, hnsw_threshold=2, ef_search=128)


async def corrupt(backend: CacheBackend, exact: str) -> None:
    assert isinstance(backend, MemoryBackend)
    backend._entries[exact].payload = b'{"query": "half an entry", "response": '


CASES = [
    BackendCase("memory", make, corrupt),
    BackendCase("memory-hnsw", make_hnsw, corrupt),
]
