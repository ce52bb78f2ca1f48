"""The embedded runtime is real: llama.cpp serves chat and embeddings from the bundled model."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import httpx
import pytest

from genq.settings import Settings
from schemas.errors import ErrorCode, TransientError
from tests.support import EmbeddedRuntime, ManagedProcess, free_port, port_is_open
from tests.support.environment import process_env
from workers.embedded import model_file, runtime_command, wait_until_ready


@pytest.mark.runtime
def test_chat_completion_returns_text_and_usage(embedded_runtime: EmbeddedRuntime) -> None:
    response = httpx.post(
        f"{embedded_runtime.url}/v1/chat/completions",
        json={
            "model": embedded_runtime.model,
            "messages": [{"role": "user", "content": "Name three colours."}],
            "max_tokens": 16,
            "temperature": 0,
            "seed": 7,
        },
        timeout=120,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == embedded_runtime.model
    assert body["choices"][0]["message"]["content"].strip()
    assert body["choices"][0]["finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.runtime
def test_embeddings_come_back_per_token(embedded_runtime: EmbeddedRuntime) -> None:
    response = httpx.post(
        f"{embedded_runtime.url}/v1/embeddings",
        json={"model": embedded_runtime.model, "input": ["hello world", "a longer second input"]},
        timeout=120,
    )

    assert response.status_code == 200, response.text
    data = sorted(response.json()["data"], key=lambda item: item["index"])
    assert [item["index"] for item in data] == [0, 1]
    vectors_per_input = [item["embedding"] for item in data]
    # This model answers with one vector per token, not one pooled vector per input.
    widths = {len(vector) for vectors in vectors_per_input for vector in vectors}
    assert len(widths) == 1
    assert widths.pop() > 100
    assert all(len(vectors) >= 2 for vectors in vectors_per_input)
    assert any(value != 0.0 for value in vectors_per_input[0][0])


@pytest.mark.runtime
def test_model_file_assembles_once_even_when_raced(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedded_model_path=None)
    results: list[Path] = []
    errors: list[BaseException] = []

    def assemble() -> None:
        try:
            results.append(model_file(settings))
        except BaseException as exc:
            errors.append(exc)

    racers = [threading.Thread(target=assemble) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()

    assert errors == []
    assert len(set(results)) == 1
    path = results[0]
    assert path.parent == tmp_path / "models"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial file left
    first_write = path.stat().st_mtime_ns
    assert model_file(settings) == path
    assert path.stat().st_mtime_ns == first_write


def test_explicit_model_path_wins_and_must_exist(tmp_path: Path) -> None:
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    assert model_file(Settings(data_dir=tmp_path, embedded_model_path=gguf)) == gguf
    with pytest.raises(Exception, match="not a file") as raised:
        model_file(Settings(data_dir=tmp_path, embedded_model_path=tmp_path / "missing.gguf"))
    assert raised.value.code is ErrorCode.MODEL_NOT_FOUND  # type: ignore[attr-defined]


def test_runtime_command_serves_on_loopback_with_alias(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedded_port=8123, default_model="gemma3-270m")
    command = runtime_command(settings, tmp_path / "m.gguf")
    flags = dict(zip(command[3::2], command[4::2], strict=True))
    assert command[:3] == [sys.executable, "-m", "llama_cpp.server"]
    assert flags["--host"] == "127.0.0.1"
    assert flags["--port"] == "8123"
    assert flags["--model_alias"] == "gemma3-270m"
    assert flags["--chat_format"] == "gemma"
    assert flags["--embedding"] == "true"


def test_wait_until_ready_times_out_with_runtime_unavailable() -> None:
    port = free_port()
    with pytest.raises(TransientError, match=f"127.0.0.1:{port}") as raised:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout_seconds=0.5)
    assert raised.value.code is ErrorCode.RUNTIME_UNAVAILABLE
    assert raised.value.retryable


@pytest.mark.runtime
@pytest.mark.slow
def test_run_embedded_stops_its_server_on_sigterm(
    embedded_runtime: EmbeddedRuntime, tmp_path: Path
) -> None:
    port = free_port()
    model_path = model_file(embedded_runtime.settings)  # already assembled: no copy
    code = (
        "import sys\n"
        "from genq.settings import Settings\n"
        "from workers.embedded import run_embedded\n"
        f"settings = Settings(embedded_port={port}, embedded_model_path={str(model_path)!r})\n"
        "sys.exit(run_embedded(settings))\n"
    )
    launcher = ManagedProcess(
        [sys.executable, "-c", code],
        log_path=tmp_path / "run_embedded.log",
        env=process_env(),
        cwd=Path(__file__).resolve().parents[2],
    ).start()
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout_seconds=120)

        launcher.send_signal(signal.SIGTERM)  # only the launcher: it must forward it

        assert launcher.stop(timeout=30) == 0, launcher.log_tail()
        assert not port_is_open(port)
    finally:
        launcher.kill()
