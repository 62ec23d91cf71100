"""A provider-neutral chat request."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .messages import Message

__all__ = [
    "ChatRequest",
    "FunctionDefinition",
    "JsonSchemaFormat",
    "NamedToolChoice",
    "ResponseFormat",
    "ToolChoice",
    "ToolDefinition",
]


class FunctionDefinition(BaseModel):
    """A function the model may call; ``parameters`` is a JSON schema of its arguments."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9_.\-]+$")
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class ToolDefinition(BaseModel):
    """A tool in the OpenAI shape: ``{"type": "function", "function": {...}}``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    function: FunctionDefinition


class _NamedFunction(BaseModel):
    name: str = Field(min_length=1)


class NamedToolChoice(BaseModel):
    """Force one named tool: ``{"type": "function", "function": {"name": ...}}``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    function: _NamedFunction


ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


class JsonSchemaFormat(BaseModel):
    """A named JSON schema the answer must follow."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(default="response", min_length=1)
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """``text``, ``json_object`` (any JSON object) or ``json_schema`` (a given schema)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class ChatRequest(BaseModel):
    """Everything a provider needs to answer one chat call.

    ``extra`` is passed through to the provider's body untouched (e.g. ``top_k``,
    ``enable_thinking``), so provider-specific parameters never need a new field here.

    ``parallel_tool_calls``: ``False`` asks for at most one tool call per answer, ``True`` allows
    several, ``None`` (the default) leaves it to the provider. Each adapter translates it (OpenAI
    and compatible: ``parallel_tool_calls``; Anthropic: ``tool_choice.disable_parallel_tool_use``)
    or drops it where the API has no such switch (Gemini, Ollama). A ``parallel_tool_calls`` key
    given in ``extra`` moves to this field, so it never reaches a body unchanged.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] | None = None
    seed: int | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    parallel_tool_calls: bool | None = Field(default=None, strict=True)
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _parallel_tool_calls_from_extra(cls, data: Any) -> Any:
        # LangChain/LlamaIndex callers and older code pass it as a provider parameter: it has a
        # field now, translated per provider (Anthropic rejects a top-level parallel_tool_calls).
        if not isinstance(data, dict):
            return data
        extra = data.get("extra")
        if not isinstance(extra, dict) or "parallel_tool_calls" not in extra:
            return data
        extra = dict(extra)
        value = extra.pop("parallel_tool_calls")
        field = data.get("parallel_tool_calls")
        if field is not None and value is not None and field != value:
            raise ValueError(
                "parallel_tool_calls is given twice with different values (as a field and in "
                "extra): give it once, as the parallel_tool_calls field"
            )
        data = {**data, "extra": extra}
        if field is None:
            data["parallel_tool_calls"] = value
        return data

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _normalise_tool_choice(cls, value: object) -> object:
        # "any" (Anthropic, LangChain) means the same as OpenAI's "required".
        if value == "any":
            return "required"
        if isinstance(value, str) and value not in ("auto", "none", "required"):
            return {"type": "function", "function": {"name": value}}
        return value

    @field_validator("response_format")
    @classmethod
    def _check_response_format(cls, value: ResponseFormat | None) -> ResponseFormat | None:
        if value is not None and value.type == "json_schema" and value.json_schema is None:
            raise ValueError("response_format of type 'json_schema' needs 'json_schema'")
        return value

    @property
    def system_prompt(self) -> str | None:
        """The concatenated text of the system/developer messages, if any."""
        parts = [m.text for m in self.messages if m.role in ("system", "developer")]
        return "\n\n".join(parts) if parts else None

    def tool_name_for_call(self, tool_call_id: str) -> str | None:
        """The function name of an earlier assistant tool call, found by its id."""
        for message in self.messages:
            for call in message.tool_calls or ():
                if call.id == tool_call_id:
                    return call.function.name
        return None
