"""Cost: prices per model, offline token counting and budgets."""

from .budget import Budget, BudgetManager, InMemoryBudgetStore, RedisBudgetStore, Reservation
from .pricing import ModelPrice, PricingTable, default_pricing
from .tokens import (
    count_media_tokens,
    count_message_tokens,
    count_tokens,
    encoding_name_for,
    estimate_tokens,
)

__all__ = [
    "Budget",
    "BudgetManager",
    "InMemoryBudgetStore",
    "ModelPrice",
    "PricingTable",
    "RedisBudgetStore",
    "Reservation",
    "count_media_tokens",
    "count_message_tokens",
    "count_tokens",
    "default_pricing",
    "encoding_name_for",
    "estimate_tokens",
]
