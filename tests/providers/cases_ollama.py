"""Contract cases for Ollama's native API."""

from llm_cache_router_integrations.testing.ollama_server import OllamaServer

from .cases import ProviderCase

CASES = [
    ProviderCase(
        provider="ollama",
        server=OllamaServer,
        model="llama3.1:8b",
        config=lambda s: {"base_url": s.base_url},
    ),
]
