"""Prometheus metrics, computed at scrape time from the broker and the store.

Nothing is counted in process memory by the workers: every value is read from Redis or the
store when scraped, so the gateway's ``/metrics``, the ``genq metrics`` exporter and
``genq stats`` all tell the same truth however many worker processes there are.

- Gauges read whole at each scrape: queue depth per lane and priority (kombu's Redis priority
  lists), jobs waiting for a runtime slot per model and priority (the fleet's backlog, where
  queued jobs wait under fleet dispatch), jobs per lane and status, and counts of what the
  store recorded (retries, lease recoveries, dead letters, webhook attempts). Those recorded
  counts shrink when retention deletes old rows, so they are gauges, not counters.
- Histograms and counters over finished jobs (queue wait, time to first token, duration,
  tokens per second): :class:`~genq.metrics_finished.FinishedJobs` observes each job once, the
  first time a scrape sees it terminal.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator

import redis
from kombu import Connection
from prometheus_client import CollectorRegistry, generate_latest, make_asgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from genq import constants as c
from genq.fleet.config import FleetConfigError
from genq.fleet.status import FleetStatus
from genq.metrics_finished import FinishedJobs
from genq.rabbitmq import queue_depths
from genq.settings import Settings
from genq.store import Engine, StoreUnavailable, build_engine
from genq.store.metrics import read_metrics
from genq.sweep_records import current_leader, host_of, sweep_records
from schemas.priority import PRIORITY_MAX, PRIORITY_MIN, celery_priority

__all__ = [
    "GenqCollector",
    "build_registry",
    "metrics_app",
    "priority_list_key",
    "render_metrics",
]

# Must match the broker transport option `sep` in genq/celery_app.py.
PRIORITY_SEPARATOR = ":"
# kombu keeps delivered-but-unacked messages of every queue in this hash.
UNACKED_HASH = "unacked"


def priority_list_key(queue: str, priority: int) -> str:
    """The Redis list holding ``queue``'s messages of genq ``priority`` (step 9-p; 0 is bare)."""
    step = celery_priority(priority)
    return queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}"


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class GenqCollector(Collector):
    """Reads the broker and the store on every ``collect()``; thread-safe."""

    def __init__(self, settings: Settings, engine: Engine, client: redis.Redis) -> None:
        self.settings = settings
        self.engine = engine
        self.redis = client
        self.finished = FinishedJobs()
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not touch Redis or the store

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            up = _gauge("genq_component_up", "1 when the scrape could read it", ["component"])
            broker = self._safe(self._broker_metrics)
            store = self._safe(self._store_metrics)
            up.add_metric(["broker"], float(broker is not None))
            up.add_metric(["store"], float(store is not None))
            sweeps = self._safe(self._sweep_metrics)
            fleet = self._safe(self._fleet_metrics)
            return [up, *(broker or []), *(store or []), *(sweeps or []), *(fleet or [])]

    def close(self) -> None:
        self.redis.close()
        self.engine.dispose()

    @staticmethod
    def _safe(read: Callable[[], list[Metric]]) -> list[Metric] | None:
        try:
            return read()
        except (redis.RedisError, StoreUnavailable, OSError):
            return None

    # -- broker ------------------------------------------------------------------------------
    def _broker_metrics(self) -> list[Metric]:
        lanes = list(self.settings.lanes)
        others = [c.WEBHOOK_QUEUE, c.MAINTENANCE_QUEUE, c.DEAD_LETTER_QUEUE]
        queues = [self.settings.queue_for(lane) for lane in lanes] + others
        if self.settings.broker_is_amqp:
            return self._rabbitmq_metrics(queues)
        priorities = range(PRIORITY_MAX, PRIORITY_MIN - 1, -1)
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            for priority in priorities:
                pipe.llen(priority_list_key(queue, priority))
        pipe.hlen(UNACKED_HASH)
        lengths = [int(n) for n in pipe.execute()]
        depth = _gauge(
            "genq_queue_depth",
            "Messages waiting in a lane's broker queue, by genq priority (9 most urgent)",
            ["lane", "priority"],
        )
        messages = _gauge("genq_queue_messages", "Messages waiting in a broker queue", ["queue"])
        per_queue = len(priorities)
        for index, queue in enumerate(queues):
            counts = lengths[index * per_queue : (index + 1) * per_queue]
            messages.add_metric([queue], float(sum(counts)))
            if index < len(lanes):
                for priority, count in zip(priorities, counts, strict=True):
                    depth.add_metric([lanes[index], str(priority)], float(count))
        unacked = _gauge(
            "genq_broker_unacked_messages", "Messages delivered to a worker and not yet acked", []
        )
        unacked.add_metric([], float(lengths[-1]))
        return [depth, messages, unacked]

    def _rabbitmq_metrics(self, queues: list[str]) -> list[Metric]:
        """RabbitMQ: each queue's ready messages, all AMQP tells (its counts by priority and
        of unacked messages are the management plugin's)."""
        url = self.settings.effective_broker_url
        try:
            with Connection(url, connect_timeout=c.REDIS_CONNECT_TIMEOUT_SECONDS) as conn:
                depths = queue_depths(conn, queues)
        except Exception as exc:  # kombu and py-amqp raise many types: the broker is down
            raise OSError(f"cannot read RabbitMQ ({exc.__class__.__name__})") from exc
        messages = _gauge("genq_queue_messages", "Messages waiting in a broker queue", ["queue"])
        for queue in queues:
            messages.add_metric([queue], float(depths.get(queue, (0, 0))[0]))
        return [messages]

    # -- the sweep (which beat leads it, which host swept: genq.sweep_records) ----------------
    def _sweep_metrics(self) -> list[Metric]:
        records = sweep_records(self.redis)
        leader = current_leader(self.redis)
        total = CounterMetricFamily(
            "genq_sweeps", "Sweeps run by the beats of each host (the leader's)", labels=["host"]
        )
        last = _gauge(
            "genq_sweep_last_timestamp_seconds",
            "When a beat of this host last swept (unix time)",
            ["host"],
        )
        for record in records:
            total.add_metric([record.host], float(record.sweeps))
            last.add_metric([record.host], record.last_at)
        leading = _gauge(
            "genq_sweep_leader", "1 for the beat holding the sweep lease now", ["host", "beat"]
        )
        if leader is not None:
            leading.add_metric([host_of(leader), leader], 1.0)
        return [total, last, leading]

    # -- the runtime fleet (genq.fleet.status) -------------------------------------------------
    def _fleet_metrics(self) -> list[Metric]:
        status = FleetStatus(self.settings, self.redis)
        try:
            rows = status.endpoints(ask=False)  # a scrape never waits for a runtime
        except FleetConfigError:
            return []  # the processes using it say why
        labels = ["endpoint"]
        up = _gauge("genq_runtime_up", "1 while the endpoint is out of cooldown", labels)
        slots = _gauge("genq_runtime_slots", "Requests the endpoint may run at once", labels)
        in_flight = _gauge("genq_runtime_in_flight", "Slot leases held on the endpoint", labels)
        errors = CounterMetricFamily(
            "genq_runtime_errors", "Failed requests (connection errors, 5xx)", labels=labels
        )
        requests = CounterMetricFamily(
            "genq_runtime_requests", "Requests that ended on the endpoint", labels=labels
        )
        ttft = _gauge("genq_runtime_ttft_seconds", "Time to first token (moving average)", labels)
        for row in rows:
            up.add_metric([row.name], float(row.state != "cooldown"))
            slots.add_metric([row.name], float(row.slots))
            in_flight.add_metric([row.name], float(row.in_flight))
            errors.add_metric([row.name], float(row.errors))
            requests.add_metric([row.name], float(row.requests))
            if row.ttft_ms is not None:
                ttft.add_metric([row.name], row.ttft_ms / 1000)
        waiting = _gauge("genq_fleet_waiting", "Jobs waiting for a slot, per model", ["model"])
        by_priority = _gauge(
            "genq_fleet_waiting_by_priority",
            "Jobs waiting for a slot in genq's backlog, per model and genq priority (9 most "
            "urgent): with fleet dispatch, where queued jobs wait (the broker holds only "
            "released ones)",
            ["model", "priority"],
        )
        for model, counts in status.waiting_by_priority().items():
            waiting.add_metric([model], float(sum(counts.values())))
            for priority, count in counts.items():
                by_priority.add_metric([model, str(priority)], float(count))
        return [up, slots, in_flight, errors, requests, ttft, waiting, by_priority]

    # -- store -------------------------------------------------------------------------------
    def _store_metrics(self) -> list[Metric]:
        counts = read_metrics(
            self.engine, finished_since=self.finished.since(), observe=self.finished.observe
        )
        return [
            _jobs_gauge(counts.jobs),
            _single(
                "genq_retries_recorded", "Retries (running → queued after an error)", counts.retries
            ),
            _single(
                "genq_lease_recoveries_recorded",
                "Running jobs the sweep requeued because their worker's lease lapsed",
                counts.recoveries,
            ),
            _labelled(
                "genq_dead_letters_recorded",
                "Dead letters by reason",
                "reason",
                counts.dead_letters,
            ),
            _labelled(
                "genq_webhook_deliveries",
                "Webhook deliveries by status",
                "status",
                counts.webhook_deliveries,
            ),
            _labelled(
                "genq_webhook_attempts_recorded",
                "Webhook attempts by outcome",
                "outcome",
                counts.webhook_attempts,
            ),
            *self.finished.collect(),
        ]


def _jobs_gauge(rows: Iterable[tuple[str, str, int]]) -> Metric:
    gauge = _gauge(
        "genq_jobs", "Jobs in the store by lane and status (within retention)", ["lane", "status"]
    )
    for lane, status, count in rows:
        gauge.add_metric([lane, status], float(count))
    return gauge


def _single(name: str, doc: str, value: int) -> Metric:
    gauge = _gauge(name, f"{doc}, recorded in the store (within retention)", [])
    gauge.add_metric([], float(value))
    return gauge


def _labelled(name: str, doc: str, label: str, rows: Iterable[tuple[str, int]]) -> Metric:
    gauge = _gauge(name, f"{doc}, recorded in the store (within retention)", [label])
    for value, count in rows:
        gauge.add_metric([str(value)], float(count))
    return gauge


def build_registry(settings: Settings) -> tuple[CollectorRegistry, GenqCollector]:
    """A registry holding genq's collector; ``close()`` the collector when done."""
    collector = GenqCollector(
        settings,
        build_engine(settings.store_url),
        redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=5.0,
            socket_connect_timeout=c.REDIS_CONNECT_TIMEOUT_SECONDS,
        ),
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry, collector


def render_metrics(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``, as ``/metrics`` serves it."""
    return generate_latest(registry)


def metrics_app(settings: Settings) -> Callable[..., Awaitable[None]]:
    """An ASGI app serving genq's metrics, for the gateway to mount at ``/metrics``."""
    registry, _collector = build_registry(settings)
    app: Callable[..., Awaitable[None]] = make_asgi_app(registry=registry)
    return app


def metric_samples(registry: CollectorRegistry) -> Iterator[tuple[str, dict[str, str], float]]:
    """Every sample as ``(name, labels, value)``: what ``genq stats`` and tests read."""
    for family in registry.collect():
        for sample in family.samples:
            yield sample.name, dict(sample.labels), sample.value
