"""The demonstration ``genq up --demo`` runs against the stack it started.

Each step prints what it did and returns whether its outcome was the expected one;
:func:`run_demo` is true only when every step was. Steps: jobs at several priorities, one
streamed live through the gateway's SSE, one cancelled while running, one webhook received
and verified by a small local receiver, one poison job dead-lettered and requeued.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from genq.settings import Settings

__all__ = ["DEMO_ENV", "DemoStep", "run_demo"]

Echo = Callable[[str], None]
JOB_TIMEOUT_SECONDS = 180.0
PRIORITIES = (1, 5, 9)
# Timings the demo stack runs with, so crash recovery shows up in seconds, and the loopback
# receiver the webhook step starts is an allowed target.
DEMO_ENV = {
    "GENQ_LEASE_SECONDS": "4",
    "GENQ_LEASE_RENEW_SECONDS": "1",
    "GENQ_SWEEP_INTERVAL_SECONDS": "1",
    "GENQ_CRASH_LIMIT": "2",
    "GENQ_WEBHOOK_ALLOW": "127.0.0.1/32",
}


@dataclass(frozen=True)
class DemoStep:
    name: str
    ok: bool
    detail: str


def _client(settings: Settings) -> Any:
    from producers.client import GenqClient

    return GenqClient(settings)


def _priorities(settings: Settings, echo: Echo) -> DemoStep:
    """Jobs at several priorities: all succeed; the order they finished in is shown."""
    with _client(settings) as client:
        submitted = [
            client.submit(
                {
                    "kind": "completion",
                    "prompt": f"A short note about priority {priority}:",
                    "max_tokens": 16,
                    "priority": priority,
                }
            )
            for priority in PRIORITIES
        ]
        echo(f"  submitted {len(submitted)} jobs at priorities {', '.join(map(str, PRIORITIES))}")
        done = [client.wait(record.id, timeout=JOB_TIMEOUT_SECONDS) for record in submitted]
    for record in sorted(done, key=lambda r: r.finished_at or r.created_at):
        text = (record.result.text or "").strip().replace("\n", " ") if record.result else ""
        echo(f"  priority {record.priority}: {record.status.value} {text[:60]!r}")
    failed = [r for r in done if r.status.value != "succeeded"]
    detail = "all succeeded" if not failed else f"{len(failed)} did not succeed"
    return DemoStep("priorities", not failed, detail)


def _streamed(settings: Settings, echo: Echo) -> DemoStep:
    """One job streamed live over the gateway's SSE; the joined text equals the stored result."""
    import httpx
    from httpx_sse import connect_sse

    if settings.admin_key is None:
        return DemoStep("stream", False, "no admin key to call the gateway with")
    base = f"http://127.0.0.1:{settings.gateway_port}"
    headers = {"Authorization": f"Bearer {settings.admin_key.get_secret_value()}"}
    body = {
        "messages": [{"role": "user", "content": "Tell me about the sea."}],
        "max_tokens": 48,
        "priority": 9,
    }
    parts: list[str] = []
    with httpx.Client(base_url=base, headers=headers, timeout=JOB_TIMEOUT_SECONDS) as http:
        job = http.post("/v1/jobs", json=body).raise_for_status().json()
        job_id = job.get("id") or job["job"]["id"]
        echo(
            f"  streaming job {job_id}: ",
        )
        with connect_sse(http, "GET", f"/v1/jobs/{job_id}/stream") as source:
            for event in source.iter_sse():
                if event.event == "delta":
                    parts.append(_delta(event.data))
                    print(parts[-1], end="", flush=True)
                elif event.event == "end":
                    break
        print(flush=True)
        final = http.get(f"/v1/jobs/{job_id}").raise_for_status().json()
    text = (final.get("result") or {}).get("text") or ""
    ok = final["status"] == "succeeded" and "".join(parts) == text and bool(text)
    return DemoStep("stream", ok, f"{len(parts)} SSE events, text matches the record: {ok}")


def _delta(data: str) -> str:
    import json

    try:
        parsed = json.loads(data)
    except ValueError:
        return data
    return str(parsed.get("delta", "")) if isinstance(parsed, dict) else str(parsed)


def _cancelled(settings: Settings, echo: Echo) -> DemoStep:
    """A long job cancelled while running: it stops within a second and keeps its partial text."""
    with _client(settings) as client:
        job = client.submit(
            {
                "messages": [{"role": "user", "content": "Count slowly to 500."}],
                "max_tokens": 400,
                "priority": 9,
            }
        )
        deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
        while client.get(job.id).status.value != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # let it generate a little
        asked = time.monotonic()
        outcome = client.cancel(job.id)
        done = client.wait(job.id, timeout=30)
        took = time.monotonic() - asked
    partial = (done.result.text or "") if done.result else ""
    echo(
        f"  cancel → {outcome.outcome}; ended {done.status.value} after {took:.2f}s with "
        f"{len(partial)} characters kept"
    )
    ok = done.status.value == "cancelled" and took < 5
    return DemoStep("cancel", ok, f"{done.status.value} in {took:.2f}s")


class _Receiver(ThreadingHTTPServer):
    def __init__(self, secret: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.rejected = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from producers.webhooks import verify_webhook

                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    receiver.events.append(verify_webhook(dict(self.headers), body, secret))
                    self.send_response(204)
                except Exception:
                    receiver.rejected += 1
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def _webhook(settings: Settings, echo: Echo) -> DemoStep:
    """A job with a per-job webhook: a local receiver gets one signed, verified event."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    receiver = _Receiver(secret)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/genq-webhook"
    try:
        with _client(settings) as client:
            job = client.submit(
                {
                    "kind": "completion",
                    "prompt": "Hello",
                    "max_tokens": 8,
                    "webhook_url": url,
                    "webhook_secret": secret,
                }
            )
            client.wait(job.id, timeout=JOB_TIMEOUT_SECONDS)
        deadline = time.monotonic() + 30
        while not receiver.events and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        receiver.shutdown()
        receiver.server_close()
    got = [e for e in receiver.events if e.get("data", {}).get("id") == job.id]
    for event in got:
        echo(f"  receiver verified {event['type']} for job {event['data']['id']}")
    ok = len(got) == 1 and receiver.rejected == 0
    return DemoStep("webhook", ok, f"{len(got)} verified event(s), {receiver.rejected} rejected")


def _dead_letter(settings: Settings, echo: Echo) -> DemoStep:
    """A poison job that crashes its worker process each time is dead-lettered after the crash
    limit while the fleet keeps working; the operator requeues it and it completes."""
    from genq import dead_letters as dlq

    with _client(settings) as client:
        job = client.submit(
            {
                "kind": "completion",
                "prompt": "Poison?",
                "max_tokens": 64,
                "metadata": {"demo": "poison"},
            }
        )
        crashes = 0
        killed: set[tuple[str, int]] = set()
        deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            record = client.get(job.id)
            if record.status.value == "dead_lettered":
                break
            attempt = (record.worker_id or "", record.attempts)
            if record.status.value == "running" and record.worker_id and attempt not in killed:
                # Play the poison: kill the worker process that is running this attempt.
                killed.add(attempt)
                try:
                    os.kill(int(record.worker_id.rsplit("/", 1)[1]), signal.SIGKILL)
                    crashes += 1
                    echo(f"  crash {crashes}: killed {record.worker_id} while it ran the job")
                except (ProcessLookupError, ValueError):
                    pass
                time.sleep(0.5)
            time.sleep(0.05)
        record = client.get(job.id)
        echo(
            f"  after {crashes} crash(es): {record.status.value} "
            f"({record.error.code if record.error else '-'})"
        )
        if record.status.value != "dead_lettered":
            return DemoStep("dead-letter", False, f"ended {record.status.value}")
        requeued = dlq.requeue(client.app, client.store, settings, job.id, operator="demo")
        echo(f"  operator requeued it: {requeued}")
        done = client.wait(job.id, timeout=JOB_TIMEOUT_SECONDS)
    echo(f"  after requeue: {done.status.value}, attempts {done.attempts}")
    return DemoStep(
        "dead-letter",
        done.status.value == "succeeded",
        f"dead-lettered after {crashes} crashes, requeued, {done.status.value}",
    )


STEPS: list[Callable[[Settings, Echo], DemoStep]] = [
    _priorities,
    _streamed,
    _cancelled,
    _webhook,
    _dead_letter,
]


def run_demo(settings: Settings, echo: Echo) -> bool:
    """Run every demonstration step; print a line per outcome; true when all were as expected."""
    echo("demo:")
    results = []
    for step in STEPS:
        try:
            result = step(settings, echo)
        except Exception as exc:  # one broken step must not hide the others' outcomes
            result = DemoStep(step.__name__.strip("_"), False, f"{type(exc).__name__}: {exc}")
        results.append(result)
        echo(f"demo {result.name}: {'ok' if result.ok else 'FAILED'} ({result.detail})")
    return all(result.ok for result in results)
