"""Files and batches (``/v1/files``, ``/v1/batches``) driven by the official ``openai`` SDK with
only ``base_url`` changed: real gateway, real worker processes, real Redis, the fake runtime
(and once the embedded one)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
from openai import OpenAI
from openai.types import Batch

from genq.fleet.backlog import Backlog
from tests.fakes.runtime_server import FakeRuntime
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.conftest import Stack
from tests.integration.gateway.conftest import (
    ADMIN_KEY,
    Gateway,
    GatewayStarter,
    run_openai_example,
)
from tests.support import EmbeddedRuntime, GenqProcess, eventually
from tests.support.environment import process_env

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "openai_batch.py"
TEXT = "Hello, world!"  # the fake runtime's default tokens
CHAT_URL = "/v1/chat/completions"
# Batches move along every 0.2 s in these tests (2 s by default).
FAST = {"batch_drive_seconds": "0.2"}


def sdk(gateway: Gateway, key: str, **options: Any) -> OpenAI:
    options.setdefault("max_retries", 0)
    return OpenAI(base_url=f"{gateway.url}/v1", api_key=key, **options)


def chat_line(custom_id: str, text: str = "Say hello.", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT_URL,
        "body": {"model": "fake-model", "messages": [{"role": "user", "content": text}], **body},
    }


def jsonl(lines: list[Any]) -> bytes:
    return b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )


def upload(client: OpenAI, lines: list[Any], name: str = "in.jsonl") -> str:
    return client.files.create(file=(name, jsonl(lines)), purpose="batch").id


def start_batch(client: OpenAI, file_id: str, endpoint: str = CHAT_URL, **options: Any) -> Batch:
    return client.batches.create(
        input_file_id=file_id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        **options,
    )


def until_status(client: OpenAI, batch_id: str, *statuses: str, timeout: float = 30) -> Batch:
    seen: list[Batch] = []

    def reached() -> bool:
        seen.append(client.batches.retrieve(batch_id))
        return seen[-1].status in statuses

    assert eventually(reached, timeout, interval=0.1), seen[-1] if seen else None
    return seen[-1]


def lines_of(client: OpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    """A result file's lines by custom_id (each custom_id once)."""
    if file_id is None:
        return {}
    text = client.files.content(file_id).text
    parsed = [json.loads(line) for line in text.splitlines()]
    by_id = {line["custom_id"]: line for line in parsed}
    assert len(by_id) == len(parsed), "a custom_id answered twice"
    return by_id


def jobs_of(gateway: Gateway, key: str, **params: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = gateway.client(key).get("/v1/jobs", params=params).json()["data"]
    return data


@pytest.fixture
def served(stack: Stack, start_gateway: GatewayStarter) -> tuple[Gateway, str]:
    """A gateway with one worker behind it, and an API key of tenant ``acme``."""
    gateway = start_gateway(**FAST)
    stack.worker()
    return gateway, gateway.key("acme")


def test_a_batch_runs_to_completed_with_one_answer_per_line(
    served: tuple[Gateway, str], fake_runtime: FakeRuntime
) -> None:
    gateway, key = served
    client = sdk(gateway, key)
    ids = [f"req-{i}" for i in range(6)]
    file_id = upload(client, [chat_line(i, max_tokens=8) for i in ids])
    batch = start_batch(client, file_id, metadata={"team": "search"})
    assert batch.status == "validating" and batch.id.startswith("batch_")  # answered at once
    assert batch.metadata == {"team": "search"}
    running = until_status(client, batch.id, "in_progress", "finalizing", "completed")
    assert running.request_counts is not None and running.request_counts.total == 6
    done = until_status(client, batch.id, "completed")
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (6, 0)
    assert done.error_file_id is None and done.output_file_id is not None
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    answers = lines_of(client, done.output_file_id)
    assert sorted(answers) == sorted(ids)
    for custom_id, line in answers.items():
        assert line["error"] is None and line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == TEXT
        job = gateway.client(key).get(f"/v1/jobs/{line['response']['request_id']}").json()
        assert (job["lane"], job["priority"], job["status"]) == ("batch", 2, "succeeded")
        assert job["metadata"]["genq_batch_id"] == batch.id, custom_id
    assert fake_runtime.stats()["requests_by_path"][CHAT_URL] == 6
    listed = client.batches.list(limit=5)
    assert [b.id for b in listed.data] == [batch.id]


def test_the_documented_example_runs(served: tuple[Gateway, str]) -> None:
    gateway, key = served
    stdout = run_openai_example(gateway, key, EXAMPLE)
    assert stdout.splitlines() == [
        "completed: 2 of 2 answered",
        f"colour {TEXT}",
        f"fruit {TEXT}",
    ]
    assert {j["priority"] for j in jobs_of(gateway, key)} == {3}


def test_embeddings_batch_at_the_priority_asked(served: tuple[Gateway, str]) -> None:
    gateway, key = served
    client = sdk(gateway, key)
    lines = [
        {"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
         "body": {"model": "fake-model", "input": f"red apple {i}"}}
        for i in range(3)
    ]  # fmt: skip
    by_header = start_batch(
        client, upload(client, lines), "/v1/embeddings", extra_headers={"X-Genq-Priority": "6"}
    )
    by_metadata = start_batch(
        client, upload(client, lines), "/v1/embeddings", metadata={"genq_priority": "4"}
    )
    for batch, priority in ((by_header, 6), (by_metadata, 4)):
        done = until_status(client, batch.id, "completed")
        answers = lines_of(client, done.output_file_id)
        assert sorted(answers) == ["e0", "e1", "e2"]
        vector = answers["e1"]["response"]["body"]["data"][0]["embedding"]
        assert isinstance(vector, list) and len(vector) == 8
        job_id = answers["e0"]["response"]["request_id"]
        assert gateway.client(key).get(f"/v1/jobs/{job_id}").json()["priority"] == priority


def test_a_create_retried_with_its_idempotency_key_is_one_batch(gateway: Gateway) -> None:
    key = gateway.key("acme")
    client = sdk(gateway, key)
    file_id = upload(client, [chat_line("a"), chat_line("b")])
    same = {"Idempotency-Key": "nightly-2026-12-01"}
    first = start_batch(client, file_id, extra_headers=same)
    again = start_batch(client, file_id, extra_headers=same)
    assert again.id == first.id
    assert [b.id for b in client.batches.list()] == [first.id]
    until_status(client, first.id, "in_progress")
    assert start_batch(client, file_id, extra_headers=same).id == first.id
    assert len(jobs_of(gateway, key)) == 2  # no worker: both lines still queued, once
    with pytest.raises(openai.ConflictError):
        start_batch(client, file_id, extra_headers=same, metadata={"other": "batch"})


def test_batch_lines_do_not_fill_the_front_doors_queue(start_gateway: GatewayStarter) -> None:
    gateway = start_gateway(openai_max_queued="2")
    client = sdk(gateway, gateway.key("acme"))
    batch = start_batch(client, upload(client, [chat_line(f"q{i}") for i in range(5)]))
    until_status(client, batch.id, "in_progress")  # no worker: its five lines stay queued
    impatient = sdk(gateway, gateway.key("acme"), timeout=httpx.Timeout(10, read=0.5))
    with pytest.raises(openai.APITimeoutError):  # queued and waited for, not a 429
        impatient.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}]
        )


def test_files_list_retrieve_content_delete_and_tenants(gateway: Gateway) -> None:
    acme, other = sdk(gateway, gateway.key("acme")), sdk(gateway, gateway.key("other"))
    content = jsonl([chat_line("a"), chat_line("b")])
    created = acme.files.create(file=("in.jsonl", content), purpose="batch")
    assert created.id.startswith("file-") and created.object == "file"
    assert (created.bytes, created.filename, created.purpose) == (len(content), "in.jsonl", "batch")
    assert created.status == "processed"
    second = acme.files.create(file=("two.jsonl", content), purpose="batch")
    assert [f.id for f in acme.files.list()] == [second.id, created.id]
    assert [f.id for f in acme.files.list(order="asc")] == [created.id, second.id]
    assert acme.files.retrieve(created.id).filename == "in.jsonl"
    assert acme.files.content(created.id).content == content
    # Another tenant's file is missing, exactly: no read, no delete, no batch.
    assert list(other.files.list()) == []
    for call in (
        lambda: other.files.retrieve(created.id),
        lambda: other.files.content(created.id),
        lambda: other.files.delete(created.id),
        lambda: start_batch(other, created.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert acme.files.delete(created.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        acme.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError) as raised:
        start_batch(acme, created.id)  # a deleted file
    assert raised.value.param == "input_file_id"
    assert [f.id for f in acme.files.list()] == [second.id]


def test_a_large_upload_is_stored_and_read_back_in_chunks(gateway: Gateway) -> None:
    client = sdk(gateway, gateway.key("acme"))
    lines = [chat_line(f"id-{i}", "x" * 300) for i in range(8000)]  # about 3 MB, 3+ chunks
    content = jsonl(lines)
    stored = client.files.create(file=("big.jsonl", content), purpose="batch")
    assert stored.bytes == len(content) > 2 * 1024 * 1024
    assert client.files.content(stored.id).content == content


BAD_LINES: list[tuple[str, list[Any], str, str | None]] = [
    ("not_json", [chat_line("a"), b'{"custom_id": "b", "url": '], "invalid_json_line", None),
    ("no_custom_id", [{**chat_line("a"), "custom_id": None}], "missing_required_parameter",
     "custom_id"),
    ("duplicate_custom_id", [chat_line("a"), chat_line("a")], "duplicate_custom_id", "custom_id"),
    ("url_not_endpoint", [chat_line("a"), {**chat_line("b"), "url": "/v1/embeddings"}],
     "mismatched_endpoint", "url"),
    ("body_fails_validation", [chat_line("a"), chat_line("b", temperature=7)],
     "invalid_request", "body.temperature"),
    ("body_asks_what_genq_cannot_do", [chat_line("a", n=2)], "unsupported_parameter", "body.n"),
    # A line's job marked as a response could be deleted (DELETE /v1/responses) mid-batch.
    ("body_takes_genqs_own_metadata_key", [chat_line("a", metadata={"genq_response": ""})],
     "unsupported_parameter", "body.metadata"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("lines", "code", "param"),
    [case[1:] for case in BAD_LINES],
    ids=[case[0] for case in BAD_LINES],
)
def test_a_bad_line_fails_the_batch_naming_it(
    served: tuple[Gateway, str], lines: list[Any], code: str, param: str | None
) -> None:
    gateway, key = served
    client = sdk(gateway, key)
    created = start_batch(client, upload(client, lines))
    assert created.status == "validating"
    batch = until_status(client, created.id, "failed")
    assert batch.errors is not None and batch.errors.data
    error = batch.errors.data[0]
    assert (error.code, error.param) == (code, param), error
    assert error.line == len(lines) and error.message
    assert batch.failed_at and batch.output_file_id is None
    assert client.batches.retrieve(batch.id).status == "failed"
    assert jobs_of(gateway, key) == []  # nothing enqueued
    assert client.models.list().data  # the gateway keeps serving


def test_bad_requests_are_clear_400s(start_gateway: GatewayStarter) -> None:
    gateway = start_gateway(batch_max_lines="3", files_max_bytes="2000")
    key = gateway.key("acme")
    client = sdk(gateway, key)
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: start_batch(client, upload(client, [])), "input_file_id"),  # empty
        (lambda: client.files.create(file=("x.jsonl", b"{}\n"), purpose="fine-tune"), "purpose"),
        (lambda: start_batch(client, "file-doesnotexist"), "input_file_id"),
        (lambda: client.batches.create(input_file_id=upload(client, [chat_line("a")]),
                                       endpoint=CHAT_URL, completion_window="1h"),  # type: ignore[arg-type]
         "completion_window"),
        (lambda: start_batch(client, upload(client, [chat_line("a")]), "/v1/responses"),
         "endpoint"),
        (lambda: start_batch(client, upload(client, [chat_line("a")]),
                             extra_headers={"X-Genq-Priority": "high"}), "X-Genq-Priority"),
    ]  # fmt: skip
    for call, param in cases:
        with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as raised:
            call()
        assert raised.value.param == param, raised.value.body
    with pytest.raises(openai.APIStatusError) as too_big:
        client.files.create(file=("big.jsonl", b"x" * 5000), purpose="batch")
    assert too_big.value.status_code == 413
    assert too_big.value.param == "file"
    assert client.batches.list().data == []
    # More lines than the limit: found by the driver reading the file, so the batch fails.
    many = start_batch(client, upload(client, [chat_line(f"{i}") for i in range(4)]))
    failed = until_status(client, many.id, "failed")
    assert failed.errors is not None and failed.errors.data
    assert (failed.errors.data[0].code, failed.errors.data[0].param) == (
        "too_many_requests",
        "input_file_id",
    )
    assert jobs_of(gateway, key) == []
    assert client.models.list().data  # still serving


def test_cancel_keeps_finished_lines_stops_running_and_queued_never_run(
    stack: Stack, start_gateway: GatewayStarter, fake_runtime: FakeRuntime
) -> None:
    gateway = start_gateway(**FAST)
    key = gateway.key("acme")
    client = sdk(gateway, key)
    fake_runtime.configure(tokens=[f"t{i} " for i in range(200)], token_delay_seconds=0.05)
    batch = start_batch(client, upload(client, [chat_line(f"c{i}") for i in range(4)]))
    stack.worker()  # one slot: one line runs, three wait
    assert eventually(lambda: len(jobs_of(gateway, key, status="running")) == 1, 15)
    backlog = Backlog(redis.Redis.from_url(stack.settings.redis_url))
    assert eventually(lambda: backlog.size() == 3)  # waiting for the slot in genq's backlog
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    assert backlog.size() == 0  # the queued lines left it with the cancel: none takes the slot
    backlog.client.close()
    done = until_status(client, batch.id, "cancelled")
    assert done.cancelling_at and done.cancelled_at and done.output_file_id is None
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (4, 0)
    errors = lines_of(client, done.error_file_id)
    assert sorted(errors) == ["c0", "c1", "c2", "c3"]
    assert {line["error"]["code"] for line in errors.values()} == {"batch_cancelled"}
    assert fake_runtime.job_requests_seen == 1  # the queued lines never reached the runtime
    assert {j["status"] for j in jobs_of(gateway, key)} == {"cancelled"}
    failed = start_batch(client, upload(client, [{**chat_line("x"), "url": "/"}]))
    until_status(client, failed.id, "failed")
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(failed.id)


def test_a_batch_cancelled_while_validating_runs_no_line(start_gateway: GatewayStarter) -> None:
    """Cancelled before the driver checked its lines (its pass is a minute away): cancelled at
    once, no job made (the driver stopping mid-queue is the store test's)."""
    gateway = start_gateway(batch_drive_seconds="60")
    key = gateway.key("acme")
    client = sdk(gateway, key)
    batch = start_batch(client, upload(client, [chat_line(f"v{i}") for i in range(3)]))
    assert batch.status == "validating"
    cancelled = client.batches.cancel(batch.id)
    assert cancelled.status == "cancelled"
    assert cancelled.cancelling_at and cancelled.cancelled_at and cancelled.in_progress_at is None
    assert client.batches.cancel(batch.id).status == "cancelled"  # again: the same answer
    assert jobs_of(gateway, key) == []


def test_a_batch_past_its_window_expires_its_unfinished_lines(
    stack: Stack, start_gateway: GatewayStarter, fake_runtime: FakeRuntime
) -> None:
    gateway = start_gateway(batch_completion_window_seconds="4", **FAST)
    key = gateway.key("acme")
    client = sdk(gateway, key)
    fake_runtime.configure(tokens=["x "] * 40, token_delay_seconds=0.05)  # 2 s a line
    batch = start_batch(client, upload(client, [chat_line(f"x{i}") for i in range(4)]))
    stack.worker()
    done = until_status(client, batch.id, "expired", timeout=30)
    assert done.expired_at and done.request_counts is not None
    answered = lines_of(client, done.output_file_id)
    stopped = lines_of(client, done.error_file_id)
    assert sorted([*answered, *stopped]) == ["x0", "x1", "x2", "x3"]
    assert len(answered) <= 2 and len(stopped) >= 2
    assert {line["error"]["code"] for line in stopped.values()} == {"batch_expired"}
    assert (done.request_counts.completed, done.request_counts.failed) == (
        len(answered),
        len(stopped),
    )


def test_a_failed_line_is_in_the_error_file_in_openai_terms(
    served: tuple[Gateway, str], fake_runtime: FakeRuntime
) -> None:
    gateway, key = served
    client = sdk(gateway, key)
    fake_runtime.configure(context_tokens=3)  # the runtime refuses longer prompts
    lines = [chat_line("short", "hi"), chat_line("long", "one two three four five six")]
    done = until_status(client, start_batch(client, upload(client, lines)).id, "completed")
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    assert sorted(lines_of(client, done.output_file_id)) == ["short"]
    [failure] = lines_of(client, done.error_file_id).values()
    assert failure["custom_id"] == "long" and failure["error"] is None
    assert failure["response"]["status_code"] == 400
    assert failure["response"]["body"]["error"]["code"] == "context_length_exceeded"


def test_batch_webhooks_through_the_endpoints_of_its_tenant(
    stack: Stack, start_gateway: GatewayStarter
) -> None:
    stack.env.update(
        {"GENQ_WEBHOOK_ALLOW": "127.0.0.1/32", "GENQ_WEBHOOK_RETRY_SCHEDULE_SECONDS": "0"}
    )
    gateway = start_gateway(**FAST)
    with WebhookReceiver() as receiver:
        admin = gateway.client(ADMIN_KEY)
        added = admin.post(
            "/v1/admin/webhooks/endpoints",
            json={"tenant": "acme", "url": receiver.url(),
                  "events": ["batch.completed", "batch.failed", "batch.cancelled"]},
        )  # fmt: skip
        assert added.status_code == 201, added.text
        secret = added.json()["secret"]
        stack.worker()
        stack.ops_worker()
        client = sdk(gateway, gateway.key("acme"))
        good = start_batch(client, upload(client, [chat_line("a"), chat_line("b")]))
        bad = start_batch(client, upload(client, [b"not json"]))
        until_status(client, good.id, "completed")
        hits = receiver.wait_for(2)
        events = {hit.verify(secret)["type"]: hit.verify(secret)["data"] for hit in hits}
        assert events["batch.completed"]["id"] == good.id
        assert events["batch.completed"]["request_counts"]["completed"] == 2
        assert events["batch.failed"]["id"] == bad.id


def test_a_worker_killed_mid_batch_still_gives_one_answer_per_line(
    stack: Stack, start_gateway: GatewayStarter, fake_runtime: FakeRuntime
) -> None:
    gateway = start_gateway(**FAST)
    key = gateway.key("acme")
    client = sdk(gateway, key)
    fake_runtime.configure(tokens=[f"t{i} " for i in range(20)], token_delay_seconds=0.05)
    ids = [f"k{i}" for i in range(6)]
    batch = start_batch(client, upload(client, [chat_line(i) for i in ids]))
    stack.beat()  # its sweep recovers the killed worker's line
    doomed = stack.worker(name="doomed")
    assert eventually(lambda: len(jobs_of(gateway, key, status="running")) == 1, 15)
    doomed.send_signal(signal.SIGKILL)
    stack.worker(name="survivor")
    done = until_status(client, batch.id, "completed", timeout=60)
    answers = lines_of(client, done.output_file_id)
    assert sorted(answers) == ids and done.error_file_id is None
    api = gateway.client(ADMIN_KEY)
    for line in answers.values():
        job = api.get(f"/v1/jobs/{line['response']['request_id']}", params={"history": "true"})
        terminal = [h for h in job.json()["history"] if h["to_status"] == "succeeded"]
        assert len(terminal) == 1 and len(job.json()["history"]) >= 3
    assert (
        sum(
            "lease lapsed" in (h["reason"] or "")
            for line in answers.values()
            for h in api.get(
                f"/v1/jobs/{line['response']['request_id']}", params={"history": "true"}
            ).json()["history"]
        )
        == 1
    )


def run_genq(stack: Stack, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genq", *argv],
        env=process_env(stack.env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_batch_cli_submits_waits_lists_and_downloads(stack: Stack, tmp_path: Any) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl([chat_line(f"cli-{i}") for i in range(3)]))
    stack.worker()
    submitted = run_genq(stack, "batch", "submit", str(source), "--wait")
    assert submitted.returncode == 0, submitted.stderr
    finished = json.loads(submitted.stdout)
    assert finished["status"] == "completed" and finished["request_counts"]["completed"] == 3
    assert "3/3" in submitted.stderr  # the progress bar's last state
    assert finished["id"] in submitted.stderr and "…" not in submitted.stderr  # fits 80 columns
    listed = run_genq(stack, "batch", "list")
    assert finished["id"] in listed.stdout and "completed" in listed.stdout
    status = json.loads(run_genq(stack, "batch", "status", finished["id"]).stdout)
    assert status["output_file_id"] == finished["output_file_id"]
    out = run_genq(stack, "batch", "download", finished["id"])
    assert out.returncode == 0, out.stderr
    assert sorted(json.loads(line)["custom_id"] for line in out.stdout.splitlines()) == [
        "cli-0",
        "cli-1",
        "cli-2",
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"")
    refused = run_genq(stack, "batch", "submit", str(bad))
    assert refused.returncode == 2 and "empty" in refused.stderr
    mismatched = tmp_path / "mismatched.jsonl"
    mismatched.write_bytes(jsonl([{**chat_line("m"), "url": "/v1/embeddings"}]))
    rejected = run_genq(stack, "batch", "submit", str(mismatched))  # its lines checked first
    assert rejected.returncode == 1 and "mismatched_endpoint" in rejected.stdout
    cancelled = run_genq(stack, "batch", "cancel", finished["id"])
    assert cancelled.returncode == 1 and "conflict" in cancelled.stderr


@pytest.mark.runtime
def test_a_batch_against_the_embedded_runtime(
    stack_env: dict[str, str],
    start_genq: Callable[..., GenqProcess],
    embedded_runtime: EmbeddedRuntime,
) -> None:
    env = {
        **stack_env,
        "GENQ_RUNTIME_URL": embedded_runtime.url,
        "GENQ_DEFAULT_MODEL": embedded_runtime.model,
    }
    real_stack = Stack(env=env, start_genq=start_genq)
    starter = GatewayStarter(real_stack)
    try:
        gateway = starter(**FAST)
        real_stack.worker()
        client = sdk(gateway, gateway.key("acme"), timeout=120)
        lines = [
            {"custom_id": name, "method": "POST", "url": CHAT_URL,
             "body": {"model": embedded_runtime.model, "max_tokens": 12, "temperature": 0,
                      "messages": [{"role": "user", "content": f"Tell me about {name}."}]}}
            for name in ("the sea", "the sky")
        ]  # fmt: skip
        batch = start_batch(client, upload(client, lines))
        done = until_status(client, batch.id, "completed", timeout=120)
        answers = lines_of(client, done.output_file_id)
        assert sorted(answers) == ["the sea", "the sky"]
        for line in answers.values():
            assert line["response"]["body"]["choices"][0]["message"]["content"].strip()
    finally:
        starter.close()
