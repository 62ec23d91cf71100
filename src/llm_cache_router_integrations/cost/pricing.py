"""Prices per model, from the shipped table, user overrides or LiteLLM's price file.

Prices are USD per 1M tokens. A model the table does not know costs 0 (with one warning per model);
models served by a free provider type (``ollama``, ``local``) cost 0 without a warning.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..types import Usage

__all__ = ["DEFAULT_OUTPUT_RESERVE", "ModelPrice", "PricingTable", "default_pricing"]

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT_RESERVE = 4096
"""Output tokens a worst-case estimate assumes when a call sets no ``max_tokens`` and the model's
maximum output is unknown."""

_MAX_WARNED = 1024  # unknown model names remembered (each warned about once)
# Snapshot suffixes: a date (-2024-08-06, -20241022, @20240229), a 3-4 digit version (-0613, -001),
# -latest or -preview (with its date). Only these fall back to the base name: a named variant
# (-pro, -deep-research, -search) is another model, unknown unless the table has it.
_SNAPSHOT_SUFFIX = re.compile(
    r"(-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8}|-\d{3,4}|-latest|-preview(-\d{2}-\d{2,4})?)$"
)


class ModelPrice(BaseModel):
    """Price and limits of one model."""

    model_config = ConfigDict(extra="ignore")

    input: float = Field(default=0.0, ge=0, description="USD per 1M input tokens")
    output: float = Field(default=0.0, ge=0, description="USD per 1M output tokens")
    cached_input: float | None = Field(
        default=None, ge=0, description="USD per 1M cached input tokens"
    )
    context_window: int | None = Field(default=None, ge=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    provider: str | None = None

    def cost(self, usage: Usage) -> float:
        """USD for ``usage``: cached input at the cached price, the rest at full price."""
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        return (
            (usage.input_tokens - cached) * self.input
            + cached * cached_price
            + usage.output_tokens * self.output
        ) / 1_000_000

    def estimate(self, input_tokens: int, output_tokens: int) -> float:
        """USD for the given token counts at full price."""
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000

    def worst_case(self, input_tokens: int, max_tokens: int | None = None) -> float:
        """USD if the answer is as long as it may be: ``max_tokens``, else the model's maximum
        output, else :data:`DEFAULT_OUTPUT_RESERVE` tokens (what budgets reserve before a call)."""
        output = max_tokens or self.max_output_tokens or DEFAULT_OUTPUT_RESERVE
        return self.estimate(input_tokens, output)


FREE = ModelPrice()


class PricingTable:
    """Looks up :class:`ModelPrice` by model name (exact, then without its snapshot suffixes)."""

    def __init__(
        self,
        prices: Mapping[str, ModelPrice | Mapping[str, Any]] | None = None,
        *,
        free_providers: tuple[str, ...] = ("ollama", "local"),
    ) -> None:
        self._prices: dict[str, ModelPrice] = {}
        self.free_providers = frozenset(free_providers)
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        if prices:
            self.update(prices)

    @classmethod
    def from_file(cls, path: str | Path) -> PricingTable:
        """Load a table in this project's format (``{"models": {name: {...}}}``)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            data["models"], free_providers=tuple(data.get("free_providers", ("ollama", "local")))
        )

    def load_litellm(self, path: str | Path) -> int:
        """Merge LiteLLM's ``model_prices_and_context_window.json``; returns how many models were read."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        count = 0
        for name, entry in data.items():
            if not isinstance(entry, dict) or entry.get("mode") not in (None, "chat", "completion"):
                continue
            if "input_cost_per_token" not in entry:
                continue
            per_million = 1_000_000
            cached = entry.get("cache_read_input_token_cost")
            self._prices[name] = ModelPrice(
                input=float(entry["input_cost_per_token"]) * per_million,
                output=float(entry.get("output_cost_per_token") or 0) * per_million,
                cached_input=None if cached is None else float(cached) * per_million,
                context_window=entry.get("max_input_tokens") or entry.get("max_tokens"),
                max_output_tokens=entry.get("max_output_tokens"),
                provider=entry.get("litellm_provider"),
            )
            count += 1
        return count

    def update(self, prices: Mapping[str, ModelPrice | Mapping[str, Any]]) -> None:
        """Add or override prices (``{"my-model": {"input": 1.0, "output": 2.0}}``)."""
        for name, price in prices.items():
            self._prices[name] = (
                price if isinstance(price, ModelPrice) else ModelPrice.model_validate(price)
            )

    def find(self, model: str, provider_type: str | None = None) -> ModelPrice | None:
        """The price of ``model`` or ``None`` when unknown (free providers are known and free).

        A dated or versioned snapshot (``gpt-4o-2024-08-06``, ``gpt-4-0613``, ``...-latest``) has
        its base model's price; any other suffix is a different model and unknown.
        """
        if provider_type in self.free_providers:
            return FREE
        for key in (
            f"{provider_type}/{model}" if provider_type else None,
            model,
            model.split("/")[-1],
        ):
            if key and key in self._prices:
                return self._prices[key]
        base = model.split("/")[-1]
        while True:  # no longest-prefix guess: "gpt-5-pro" must not be priced as "gpt-5"
            stripped = _SNAPSHOT_SUFFIX.sub("", base)
            if stripped == base:
                return None
            base = stripped
            if base in self._prices:
                return self._prices[base]

    def price(self, model: str, provider_type: str | None = None) -> ModelPrice:
        """Like :meth:`find`, but an unknown model costs 0 (warned about once)."""
        found = self.find(model, provider_type)
        if found is not None:
            return found
        with self._lock:
            # Bounded: model names come from callers; past the bound unknown models go unreported.
            if model not in self._warned and len(self._warned) < _MAX_WARNED:
                self._warned.add(model)
                logger.warning(
                    "no price known for model %r: counting it as free; add it with "
                    "LLMRouter(pricing={%r: {'input': ..., 'output': ...}})",
                    model,
                    model,
                )
        return FREE

    def cost(self, model: str, usage: Usage, provider_type: str | None = None) -> float:
        """USD for ``usage`` on ``model``."""
        return self.price(model, provider_type).cost(usage)

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.find(model) is not None

    def __len__(self) -> int:
        return len(self._prices)


def default_pricing() -> PricingTable:
    """A fresh table loaded from the shipped ``prices.json``."""
    text = resources.files(__package__).joinpath("data/prices.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return PricingTable(data["models"], free_providers=tuple(data.get("free_providers", ())))
