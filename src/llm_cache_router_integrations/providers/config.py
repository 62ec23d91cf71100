"""Configuration of one provider instance."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["ProviderConfig"]


class ProviderConfig(BaseModel):
    """How to reach one provider instance.

    Several instances of one provider type can live side by side under different names, e.g.
    ``{"openai-eu": {"type": "openai", "base_url": "https://eu.example/v1"}}``. The API key is held
    as a :class:`~pydantic.SecretStr`, so it never shows in a repr, a log line or a dump.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    type: str | None = Field(
        default=None, description="registered provider type; default: the name"
    )
    api_key: SecretStr | None = Field(default=None, description="default: the provider's env var")
    base_url: str | None = None
    models: list[str] = Field(default_factory=list)
    timeout: float = Field(
        default=60.0,
        gt=0,
        description="seconds for a whole request; for a stream, for each chunk (the first "
        "included): the call's own timeout= bounds a whole stream",
    )
    connect_timeout: float = Field(default=10.0, gt=0)
    headers: dict[str, str] = Field(
        default_factory=dict,
        repr=False,
        description="extra HTTP headers (may carry a key, e.g. Azure's api-key: not in the repr)",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="extra body parameters sent with every request"
    )
    max_connections: int = Field(default=100, ge=1)

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        try:
            url = httpx.URL(value)
            port = url.port
        except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
            raise ValueError(f"base_url is not a valid URL ({exc})") from None
        if not url.host or (port is not None and not 0 < port < 65536):
            raise ValueError("base_url needs a host (and a port between 1 and 65535)")
        return value
