"""The provider contract cases: one ``cases_<provider>.py`` module per wire protocol defines ``CASES``.

A case says how to start the provider's loopback server, how to configure the adapter against it
and which usage the adapter must report for an answer of the server's brain.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llm_cache_router_integrations.testing import Answer, LoopbackServer
from llm_cache_router_integrations.types import Usage

__all__ = ["ProviderCase", "all_cases", "plain_usage"]


def plain_usage(answer: Answer) -> Usage:
    """The usage of a server that reports input/output tokens and their sum."""
    return Usage.of(answer.input_tokens, answer.output_tokens)


@dataclass(frozen=True)
class ProviderCase:
    """One provider type against its loopback server."""

    provider: str
    server: Callable[[], LoopbackServer]
    model: str
    config: Callable[[LoopbackServer], dict[str, Any]]
    expected_usage: Callable[[Answer], Usage] = plain_usage
    marks: tuple[Any, ...] = field(default=())

    def __str__(self) -> str:
        return self.provider


def all_cases() -> list[ProviderCase]:
    """Every ``CASES`` entry of the ``cases_*`` modules beside this one."""
    import tests.providers as package

    cases: list[ProviderCase] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("cases_"):
            module = importlib.import_module(f"tests.providers.{info.name}")
            cases.extend(module.CASES)
    return cases
