"""The backend contract cases: each ``cases_<backend>.py`` module beside this one defines ``CASES``.

A case says how to build a fresh, empty backend and how to corrupt one stored entry in the
backend's own storage. ``test_backend_contract.py`` runs every case through the same tests, so all
backends behave alike (see :class:`~llm_cache_router_integrations.cache.backends.CacheBackend`).

Writing a case::

    async def make(env: BackendEnv, max_entries: int | None, dim: int) -> CacheBackend:
        url = env.fixture("redis_url")            # any pytest fixture, e.g. a server
        return RedisBackend(url=url, prefix=env.unique, max_entries=max_entries, dim=dim)

    async def corrupt(backend: CacheBackend, exact: str) -> None:
        ...                                       # overwrite the stored JSON of ``exact``

    CASES = [BackendCase("redis", make, corrupt, marks=(pytest.mark.redis,))]
"""

from __future__ import annotations

import importlib
import pkgutil
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llm_cache_router_integrations.cache.backends import CacheBackend

__all__ = ["BackendCase", "BackendEnv", "all_backend_cases"]


@dataclass
class BackendEnv:
    """What a case's factory may use: a private temporary directory and pytest fixtures."""

    tmp_path: Path
    request: pytest.FixtureRequest
    unique: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:12]}")
    """A fresh name per test (a key prefix, collection or file name)."""

    def fixture(self, name: str) -> Any:
        """The value of the pytest fixture ``name`` (e.g. ``"redis_url"``)."""
        return self.request.getfixturevalue(name)


@dataclass(frozen=True)
class BackendCase:
    """One backend under the contract.

    ``make(env, max_entries, dim)`` returns a new, empty backend bounded by ``max_entries`` for
    vectors of dimension ``dim``; the test closes it. ``corrupt(backend, exact)`` writes garbage
    where the backend keeps the entry stored under ``exact``.
    """

    name: str
    make: Callable[[BackendEnv, int | None, int], Awaitable[CacheBackend]]
    corrupt: Callable[[CacheBackend, str], Awaitable[None]]
    marks: tuple[Any, ...] = ()

    def __str__(self) -> str:
        return self.name


def all_backend_cases() -> list[BackendCase]:
    """Every ``CASES`` entry of the ``cases_*`` modules beside this one."""
    import tests.cache as package

    cases: list[BackendCase] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("cases_"):
            module = importlib.import_module(f"tests.cache.{info.name}")
            cases.extend(module.CASES)
    return cases
