"""Fault injection for the loopback provider servers: a catalogue of provider faults, on 127.0.0.1.

:class:`FaultInjection` extends any protocol server (see :class:`FaultyOpenAIServer`) with one more
scripted reply, :class:`RawBytes`: bytes written to the socket as they are, then a clean close or a
reset. It expresses what the HTTP-level replies of :mod:`.server` cannot: a body shorter than its
``Content-Length``, a reset in the middle of a non-streamed body, headers cut short. It can also
damage the server's own next answers, in whatever protocol it speaks: :meth:`~FaultInjection.drip`
sends them slowly, :meth:`~FaultInjection.corrupt` truncates, resets, garbles or empties them.

:data:`FAULTS` names every fault of the reliability suite with the reply that injects it, for a
complete call and for a stream, in OpenAI's wire format. A connection refused needs no server:
:func:`refused_url` is a loopback URL on which nothing listens.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any, Literal, cast

from .brain import Brain
from .openai_server import OpenAIServer
from .server import (
    JSONReply,
    LoopbackServer,
    RawReply,
    RecordedRequest,
    Reply,
    ResetConnection,
    StreamReply,
    _Handler,
    _HTTPServer,
    sse,
)

__all__ = [
    "FAULTS",
    "Corruption",
    "Fault",
    "FaultInjection",
    "FaultyOpenAIServer",
    "RawBytes",
    "garble",
    "http_response",
    "openai_chunk",
    "openai_error",
    "refused_url",
]

STALL_S = 0.6
"""How long a stalling reply keeps the client waiting: set provider timeouts well below it."""

DRIP_S = 0.02
"""The pause before each piece of a slow drip."""


@dataclass(slots=True)
class RawBytes:
    """``data`` written to the socket verbatim (status line and headers included), after ``delay``
    seconds; then the connection is closed cleanly (``then="close"``) or reset (``"reset"``)."""

    data: bytes
    then: Literal["close", "reset"] = "close"
    delay: float = 0.0


AnyReply = Reply | RawBytes


def http_response(
    body: bytes,
    *,
    status: int = 200,
    content_type: str = "application/json",
    content_length: int | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """An HTTP/1.1 response as bytes; ``content_length`` may lie (e.g. promise more than sent)."""
    length = len(body) if content_length is None else content_length
    lines = [
        f"HTTP/1.1 {status} Fault",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _FaultHandler(_Handler):
    def _send(self, reply: AnyReply) -> None:
        if not isinstance(reply, RawBytes):
            super()._send(reply)
            return
        if reply.delay:
            time.sleep(reply.delay)
        try:
            self.wfile.write(reply.data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        if reply.then == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True


class _FaultHTTPServer(_HTTPServer):
    def __init__(self, owner: LoopbackServer) -> None:
        ThreadingHTTPServer.__init__(self, ("127.0.0.1", 0), _FaultHandler)
        self.owner = owner


Corruption = Literal["truncate", "reset", "garble", "empty"]
"""How :meth:`FaultInjection.corrupt` damages a server's own answer (in any wire protocol)."""


def garble(value: Any) -> Any:
    """``value`` with its shape broken but its text kept: numbers and booleans become text, lists
    become objects; strings (event types, content) stay, so parsers get far enough to trip."""
    if isinstance(value, dict):
        return {key: garble(item) for key, item in value.items()}
    if isinstance(value, list):
        return {str(index): garble(item) for index, item in enumerate(value)}
    if isinstance(value, bool | int | float):
        return "many"
    return value


def _garble_frame(frame: bytes) -> bytes:
    """An SSE frame or an NDJSON line with every JSON payload in it garbled."""
    lines = []
    for line in frame.decode().split("\n"):
        prefix, payload = ("data: ", line[6:]) if line.startswith("data: ") else ("", line)
        try:
            data = json.loads(payload)
        except json.JSONDecodeError:
            lines.append(line)
            continue
        lines.append(prefix + json.dumps(garble(data)))
    return "\n".join(lines).encode()


def _corrupted(reply: Reply, kind: Corruption) -> AnyReply:
    if isinstance(reply, StreamReply):
        half = reply.frames[: max(len(reply.frames) // 2, 1)]
        if kind == "garble":
            reply.frames = [_garble_frame(frame) for frame in reply.frames]
        elif kind == "empty":
            reply.frames = []
        else:
            reply.frames, reply.then = half, "reset" if kind == "reset" else "end"
        return reply
    if not isinstance(reply, JSONReply):
        return reply
    if kind == "garble":
        reply.body = garble(reply.body)
        return reply
    if kind == "empty":
        reply.body = {}
        return reply
    body = json.dumps(reply.body).encode()
    cut = http_response(body[: len(body) // 2], status=reply.status, content_length=len(body))
    return RawBytes(cut, then="reset" if kind == "reset" else "close")


class FaultInjection(LoopbackServer):
    """Mix into a protocol server (before it) to accept :class:`RawBytes` in :meth:`push`, and to
    damage its own answers: slowly (:meth:`drip`) or broken (:meth:`corrupt`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: deque[Callable[[Reply], AnyReply]] = deque()

    def start(self) -> FaultInjection:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        self._httpd = _FaultHTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def push(self, *replies: AnyReply) -> None:
        """Serve these replies first, one per request, in order (:class:`RawBytes` allowed)."""
        with self.lock:
            self.script.extend(cast("tuple[Reply, ...]", replies))

    def drip(self, delay: float = DRIP_S, count: int = 1) -> None:
        """Send the next ``count`` default answers slowly: each piece after ``delay`` seconds.

        A stream's events come one by one; a JSON body is cut into eight chunked pieces. The
        answer itself stays correct: a slow drip is a fault of timing only.
        """

        def slow(reply: Reply) -> AnyReply:
            if isinstance(reply, StreamReply):
                reply.delay = delay
            elif isinstance(reply, JSONReply):
                pieces = _pieces(json.dumps(reply.body).encode(), 8)
                return StreamReply(
                    pieces, status=reply.status, content_type="application/json", delay=delay
                )
            return reply

        with self.lock:
            self._pending.extend([slow] * count)

    def corrupt(self, kind: Corruption, count: int = 1) -> None:
        """Damage the next ``count`` default answers, whatever the protocol.

        ``truncate``: half the stream's events then a clean end, or half the JSON body under the
        full ``Content-Length``; ``reset``: the same, then a TCP reset; ``garble``: every JSON
        payload with numbers turned to text and lists to objects (see :func:`garble`);
        ``empty``: a 200 stream without events, or ``{}``.
        """
        with self.lock:
            self._pending.extend([lambda reply: _corrupted(reply, kind)] * count)

    def answer(self, request: RecordedRequest) -> Reply:
        """The protocol's answer, dripped or corrupted when asked to."""
        reply = super().answer(request)
        with self.lock:
            transform = self._pending.popleft() if self._pending else None
        return reply if transform is None else cast("Reply", transform(reply))

    def reset(self) -> None:
        """Forget requests, answers, pending drips/corruptions and unserved scripted replies."""
        with self.lock:
            self.requests.clear()
            self.script.clear()
            self.answers.clear()
            self._pending.clear()


class FaultyOpenAIServer(FaultInjection, OpenAIServer):
    """An :class:`OpenAIServer` that also serves :class:`RawBytes` faults."""


def refused_url(path: str = "/v1") -> str:
    """A ``http://127.0.0.1:PORT`` URL on which nothing listens (connecting is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# ---------------------------------------------------------------- OpenAI wire pieces
def openai_error(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error body."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def openai_chunk(
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    *,
    model: str = "gpt-4o-mini",
    choices: list[dict[str, Any]] | None = None,
) -> bytes:
    """One ``chat.completion.chunk`` SSE frame (``choices`` overrides the single delta choice)."""
    body = {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": choices
        if choices is not None
        else [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }
    return sse(body)


def _completion(text: str, model: str) -> dict[str, Any]:
    answer = Brain().answer(turns=[])
    answer.text = text
    return OpenAIServer()._completion(answer, model)


def _pieces(data: bytes, count: int) -> list[bytes]:
    step = max(len(data) // count, 1)
    return [data[i : i + step] for i in range(0, len(data), step)]


# ---------------------------------------------------------------- the catalogue
@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: the reply that injects it for a complete call and for a stream.

    ``complete``/``stream`` return the reply given the model name; ``None`` means the fault does
    not apply to that mode.
    """

    name: str
    description: str
    complete: Callable[[str], AnyReply] | None
    stream: Callable[[str], AnyReply] | None

    def reply(self, *, stream: bool, model: str = "gpt-4o-mini") -> AnyReply:
        """The faulty reply for this mode."""
        build = self.stream if stream else self.complete
        if build is None:
            raise ValueError(
                f"fault {self.name!r} does not apply to {'stream' if stream else 'complete'}"
            )
        return build(model)


def _both(reply: Callable[[str], AnyReply]) -> tuple[Callable[[str], AnyReply], ...]:
    return (reply, reply)


_SERVER_ERROR = openai_error("The server had an error while processing", "server_error")
_OVERLOADED = openai_error("overloaded, try again", "server_error")
_RATE = openai_error("Rate limit reached for requests", "requests", "rate_limit_exceeded")


def _truncated_body(model: str) -> RawBytes:
    body = json.dumps(_completion("a complete answer that never fully arrives", model)).encode()
    half = body[: len(body) // 2]
    return RawBytes(http_response(half, content_length=len(body)))


def _reset_mid_body(model: str) -> RawBytes:
    body = json.dumps(_completion("a complete answer cut by a reset", model)).encode()
    return RawBytes(http_response(body[: len(body) // 2], content_length=len(body)), then="reset")


def _started(model: str) -> list[bytes]:
    return [
        openai_chunk({"role": "assistant", "content": ""}, model=model),
        openai_chunk({"content": "Partial "}, model=model),
        openai_chunk({"content": "answer "}, model=model),
    ]


FAULTS: dict[str, Fault] = {
    fault.name: fault
    for fault in (
        Fault(
            "http-500",
            "HTTP 500 with OpenAI's error body",
            *_both(lambda m: JSONReply(_SERVER_ERROR, status=500)),
        ),
        Fault(
            "http-502",
            "HTTP 502 with a proxy's HTML page",
            *_both(
                lambda m: RawReply(b"<html>502 Bad Gateway</html>", 502, content_type="text/html")
            ),
        ),
        Fault("http-503", "HTTP 503 overloaded", *_both(lambda m: JSONReply(_OVERLOADED, 503))),
        Fault(
            "429-retry-after",
            "HTTP 429 with Retry-After: 0.05",
            *_both(lambda m: JSONReply(_RATE, status=429, headers={"Retry-After": "0.05"})),
        ),
        Fault(
            "429-retry-after-ms",
            "HTTP 429 with retry-after-ms: 40",
            *_both(lambda m: JSONReply(_RATE, status=429, headers={"retry-after-ms": "40"})),
        ),
        Fault(
            "429-no-retry-after",
            "HTTP 429 without Retry-After",
            *_both(lambda m: JSONReply(_RATE, status=429)),
        ),
        Fault(
            "429-retry-after-long",
            "HTTP 429 with Retry-After: 0.5 (longer than a short call deadline)",
            *_both(lambda m: JSONReply(_RATE, status=429, headers={"Retry-After": "0.5"})),
        ),
        Fault(
            "429-retry-after-over-cap",
            "HTTP 429 asking to wait 30 s (beyond any test's max_retry_after)",
            *_both(lambda m: JSONReply(_RATE, status=429, headers={"Retry-After": "30"})),
        ),
        Fault(
            "read-timeout",
            f"the server reads the request and stalls {STALL_S}s before any header",
            *_both(lambda m: JSONReply(_completion("too late", m), delay=STALL_S)),
        ),
        Fault(
            "stream-stall",
            f"headers arrive, then the stream stalls {STALL_S}s before its first event",
            None,
            lambda m: StreamReply(_started(m), delay=STALL_S),
        ),
        Fault(
            "reset-before-headers",
            "TCP reset before any response byte",
            *_both(lambda m: ResetConnection()),
        ),
        Fault(
            "reset-mid-body",
            "TCP reset in the middle of the body (mid-stream for a stream)",
            _reset_mid_body,
            lambda m: StreamReply(_started(m), then="reset"),
        ),
        Fault(
            "truncated",
            "the body ends early: half a JSON body / an SSE frame cut mid-way, no [DONE]",
            _truncated_body,
            lambda m: StreamReply(
                [*_started(m), b'data: {"choices": [{"index": 0, "delta": {"content": "tr'],
            ),
        ),
        Fault(
            "malformed-json",
            "a 200 whose JSON (or first SSE event) does not parse",
            lambda m: RawReply(b'{"choices": [{"message": {"content": "x"'),
            lambda m: StreamReply([b"data: {broken json\n\n"]),
        ),
        Fault(
            "wrong-shape",
            "a 200 whose JSON parses but has the wrong shape (a choice or delta that is a string)",
            lambda m: JSONReply({"id": "x", "model": m, "choices": ["not an object"]}),
            lambda m: StreamReply(
                [openai_chunk(model=m, choices=[{"index": 0, "delta": "not an object"}])]
            ),
        ),
        Fault(
            "error-in-200",
            "an error object in a 200 body / an error event inside a 200 stream after text",
            lambda m: JSONReply(_OVERLOADED),
            lambda m: StreamReply([*_started(m), sse(_OVERLOADED)]),
        ),
        Fault(
            "error-event-first",
            "an error event as the first event of a 200 stream",
            None,
            lambda m: StreamReply(
                [openai_chunk({"role": "assistant", "content": ""}, model=m), sse(_OVERLOADED)]
            ),
        ),
        Fault(
            "empty-choices",
            "a 200 answer whose choices list is empty",
            lambda m: JSONReply(
                {"id": "x", "object": "chat.completion", "model": m, "choices": []}
            ),
            lambda m: StreamReply([openai_chunk(model=m, choices=[]), b"data: [DONE]\n\n"]),
        ),
        Fault(
            "bad-content-encoding",
            "Content-Encoding: gzip on bytes that are not gzip",
            lambda m: RawReply(b"definitely not gzip", headers={"Content-Encoding": "gzip"}),
            lambda m: StreamReply([b"definitely not gzip"], headers={"Content-Encoding": "gzip"}),
        ),
    )
}
