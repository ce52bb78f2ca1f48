"""The local stack's supervisor stops components in order: the rest, then the runtime, then Redis.

Each component here is a small Python process that records when SIGTERM reached it; the
workers take a while to finish (as a worker finishing its job does), and the runtime they
finish it on must still be there until they are done.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from genq.cli.stack.plan import Component, Probe
from genq.cli.stack.supervisor import Supervisor
from tests.support import eventually

COMPONENT = """
import signal, sys, time
name, record, linger = sys.argv[1], sys.argv[2], float(sys.argv[3])
def stop(*_):
    with open(record, "a") as f:
        f.write(f"{name} term {time.monotonic()}\\n")
    time.sleep(linger)
    with open(record, "a") as f:
        f.write(f"{name} gone {time.monotonic()}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print(f"{name} ready", flush=True)
while True:
    time.sleep(0.05)
"""


def _component(script: Path, record: Path, name: str, linger: float) -> Component:
    argv = (sys.executable, str(script), name, str(record), str(linger))
    return Component(name, argv, Probe("log", f"{name} ready", 30.0))


def test_workers_stop_before_the_runtime_and_the_runtime_before_redis(tmp_path: Path) -> None:
    script, record = tmp_path / "component.py", tmp_path / "record.txt"
    script.write_text(COMPONENT)
    components = [
        _component(script, record, "redis", 0.0),
        _component(script, record, "runtime", 0.0),
        _component(script, record, "worker", 1.0),  # finishing its job on the runtime
        _component(script, record, "gateway", 0.0),
    ]
    lines: list[str] = []
    supervisor = Supervisor(
        components, env={}, log_dir=tmp_path / "logs", echo=lines.append, grace_seconds=10
    )

    def stop_once_ready() -> None:
        if eventually(lambda: all(supervisor.is_ready(c.name) for c in components), timeout=30):
            supervisor.request_stop()
        else:
            lines.append("not ready")
            supervisor.request_stop()

    stopper = threading.Thread(target=stop_once_ready, daemon=True)
    stopper.start()
    supervisor.run()  # signal handlers: the main thread's
    stopper.join(timeout=5)
    assert "not ready" not in lines, lines

    events = [line.split() for line in record.read_text().splitlines()]
    at = {(name, what): float(t) for name, what, t in events}
    assert at["runtime", "term"] >= at["worker", "gone"], events
    assert at["runtime", "term"] >= at["gateway", "gone"], events
    assert at["redis", "term"] >= at["runtime", "gone"], events
