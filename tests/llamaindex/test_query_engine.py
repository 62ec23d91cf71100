"""A VectorStoreIndex query engine with ``Settings.llm = RouterLLM(...)``."""

from __future__ import annotations

import json

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.response.schema import StreamingResponse
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.embeddings import MockEmbedding

from llm_cache_router_integrations.llamaindex import RouterLLM
from llm_cache_router_integrations.testing.openai_server import OpenAIServer

from .conftest import make_router

DOCUMENTS = [
    Document(text="The Eiffel Tower in Paris is 330 metres tall and was finished in 1889."),
    Document(text="Llamas are domesticated South American camelids used as pack animals."),
]


def build_index() -> VectorStoreIndex:
    return VectorStoreIndex.from_documents(DOCUMENTS)


def test_query_engine_answers_through_the_router(openai_server: OpenAIServer) -> None:
    counter = TokenCountingHandler()
    Settings.callback_manager = CallbackManager([counter])
    Settings.embed_model = MockEmbedding(embed_dim=8)
    Settings.llm = RouterLLM(router=make_router(openai_server), temperature=0)

    engine = build_index().as_query_engine(similarity_top_k=2)
    response = engine.query("How tall is the Eiffel Tower?")

    assert str(response).startswith("Answer to: ")
    assert len(openai_server.requests) == 1
    sent = json.dumps(openai_server.requests[0].body["messages"])
    assert "330 metres tall" in sent and "How tall is the Eiffel Tower?" in sent  # context + query
    assert len(response.source_nodes) == 2
    answer = openai_server.last_answer
    assert counter.prompt_llm_token_count == answer.input_tokens
    assert counter.completion_llm_token_count == answer.output_tokens


async def test_async_query_engine(openai_server: OpenAIServer) -> None:
    Settings.embed_model = MockEmbedding(embed_dim=8)
    Settings.llm = RouterLLM(router=make_router(openai_server))
    engine = build_index().as_query_engine()
    response = await engine.aquery("What are llamas used for?")
    assert str(response).startswith("Answer to: ")
    assert "What are llamas used for?" in json.dumps(openai_server.requests[-1].body)


def test_streaming_query_engine(openai_server: OpenAIServer) -> None:
    Settings.embed_model = MockEmbedding(embed_dim=8)
    Settings.llm = RouterLLM(router=make_router(openai_server))
    engine = build_index().as_query_engine(streaming=True)
    streaming = engine.query("When was the Eiffel Tower finished?")
    assert isinstance(streaming, StreamingResponse)
    text = "".join(streaming.response_gen)
    assert text.startswith("Answer to: ") and openai_server.requests[-1].body["stream"] is True
