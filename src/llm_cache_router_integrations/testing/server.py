"""A small threaded HTTP/1.1 server on 127.0.0.1 with scripted replies and faults.

Each protocol server subclasses :class:`LoopbackServer` and implements :meth:`answer`, which turns a
recorded request into a :class:`Reply`. Tests can :meth:`~LoopbackServer.push` replies that are
served first, in order: JSON bodies with any status, event streams (optionally slow, or cut by a
connection reset), and raw connection resets.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from .brain import Answer, Brain

__all__ = [
    "JSONReply",
    "LoopbackServer",
    "RawReply",
    "RecordedRequest",
    "Reply",
    "ResetConnection",
    "StreamReply",
]


@dataclass(slots=True)
class RecordedRequest:
    """A request as the server received it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes


@dataclass(slots=True)
class JSONReply:
    """A JSON body with a status; ``delay`` seconds pass before the headers are sent."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(slots=True)
class RawReply:
    """Bytes sent as the body, as they are (e.g. malformed JSON)."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class StreamReply:
    """A streamed body sent frame by frame with chunked encoding.

    ``delay`` is slept before each frame; ``then="reset"`` resets the connection instead of
    ending the stream cleanly after the last frame.
    """

    frames: list[bytes]
    status: int = 200
    content_type: str = "text/event-stream"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    then: str = "end"


@dataclass(slots=True)
class ResetConnection:
    """Reset the TCP connection before any response byte is sent."""


Reply = JSONReply | RawReply | StreamReply | ResetConnection


def sse(data: Any, event: str | None = None) -> bytes:
    """One SSE frame; ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def ndjson(data: Any) -> bytes:
    """One NDJSON line."""
    return (json.dumps(data, separators=(",", ":")) + "\n").encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every reply.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        parts = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            raw=raw,
        )
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(request)
            scripted = owner.script.popleft() if owner.script else None
        reply = scripted if scripted is not None else owner.answer(request)
        self._send(reply)

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _send(self, reply: Reply) -> None:
        if isinstance(reply, ResetConnection):
            self._reset()
            return
        if isinstance(reply, JSONReply | RawReply):
            if isinstance(reply, JSONReply):
                if reply.delay:
                    time.sleep(reply.delay)
                data, ctype = json.dumps(reply.body).encode(), "application/json"
            else:
                data, ctype = reply.body, reply.content_type
            self.send_response(reply.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        try:
            for frame in reply.frames:
                if reply.delay:
                    time.sleep(reply.delay)
                self.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
                self.wfile.flush()
            if reply.then == "reset":
                self._reset()
                return
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # many concurrent clients in load tests

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-reply (a test cutting a stream short) is not a server error.
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def __init__(self, owner: LoopbackServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner


class LoopbackServer:
    """Base of the protocol servers: start it (or use ``with``), point a provider at :attr:`url`."""

    def __init__(self, brain: Brain | None = None) -> None:
        self.brain = brain or Brain()
        self.requests: list[RecordedRequest] = []
        self.script: deque[Reply] = deque()
        self.answers: list[Answer] = []
        self.lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        assert self._httpd is not None, "the server is not started"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (protocol servers may add a path, see ``base_url``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The base URL a provider should be configured with."""
        return self.url

    # -------------------------------------------------------------- scripting
    def push(self, *replies: Reply) -> None:
        """Serve these replies first, one per request, in order."""
        with self.lock:
            self.script.extend(replies)

    @property
    def last_answer(self) -> Answer:
        """The last answer the brain produced (its usage is what the server reported)."""
        return self.answers[-1]

    def think(self, **kwargs: Any) -> Answer:
        """Ask the brain and remember the answer."""
        answer = self.brain.answer(**kwargs)
        with self.lock:
            self.answers.append(answer)
        return answer

    def answer(self, request: RecordedRequest) -> Reply:
        """The protocol's default reply to ``request`` (implemented by each protocol server)."""
        raise NotImplementedError
