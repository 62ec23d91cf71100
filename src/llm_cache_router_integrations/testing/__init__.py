"""Loopback servers that speak each provider's real wire format, for tests, demos and benchmarks.

They run in a background thread on ``127.0.0.1`` and answer deterministically (see
:mod:`.brain`), or with scripted replies and faults pushed by a test (see :mod:`.server`).
"""

from .brain import Answer, Brain, Turn
from .server import (
    JSONReply,
    LoopbackServer,
    RecordedRequest,
    Reply,
    ResetConnection,
    StreamReply,
)

__all__ = [
    "Answer",
    "Brain",
    "JSONReply",
    "LoopbackServer",
    "RecordedRequest",
    "Reply",
    "ResetConnection",
    "StreamReply",
    "Turn",
]
