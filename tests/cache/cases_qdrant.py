"""The Qdrant backend under the contract, in local mode on disk (a directory in the temp dir).

Only the on-disk local mode runs the contract: the in-memory mode shares every code path and is
covered by ``test_qdrant_backend.py`` (local mode filters in Python, so each contract run of the
10k-lookup test takes tens of seconds).
"""

from __future__ import annotations

import pytest

from llm_cache_router_integrations.cache.backends import CacheBackend
from llm_cache_router_integrations.cache.backends.qdrant import QdrantBackend, point_id

from .backend_cases import BackendCase, BackendEnv


async def make(env: BackendEnv, max_entries: int | None, dim: int) -> CacheBackend:
    return QdrantBackend(
        path=str(env.tmp_path / "qdrant"), collection=env.unique, max_entries=max_entries, dim=dim
    )


async def corrupt(backend: CacheBackend, exact: str) -> None:
    assert isinstance(backend, QdrantBackend)
    client = backend.client()
    [record] = await client.retrieve(backend.collection, ids=[point_id(exact)])
    assert record.payload and record.payload["exact"] == exact
    await client.set_payload(
        backend.collection, payload={"entry": '{"exact": 1, "query": '}, points=[point_id(exact)]
    )


# Local mode filters in Python: the 10k-lookup test alone takes ~40 s on an idle machine.
CASES = [BackendCase("qdrant", make, corrupt, marks=(pytest.mark.timeout(600),))]
