"""The SQLite backend under the contract (a fresh file in the test's temporary directory)."""

from __future__ import annotations

import sqlite3

from llm_cache_router_integrations.cache.backends import CacheBackend, SQLiteBackend

from .backend_cases import BackendCase, BackendEnv


async def make(env: BackendEnv, max_entries: int | None, dim: int) -> CacheBackend:
    return SQLiteBackend(env.tmp_path / f"{env.unique}.sqlite3", max_entries=max_entries, dim=dim)


async def corrupt(backend: CacheBackend, exact: str) -> None:
    # Another connection writes, as another process would: the backend must notice.
    assert isinstance(backend, SQLiteBackend)
    with sqlite3.connect(backend.path) as conn:
        changed = conn.execute(
            "UPDATE cache_entries SET entry = ? WHERE exact = ?", ('{"exact": 1, "query": ', exact)
        ).rowcount
    conn.close()
    assert changed == 1


CASES = [BackendCase("sqlite", make, corrupt)]
