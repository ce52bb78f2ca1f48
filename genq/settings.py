"""The one typed settings object (prefix ``GENQ_``), read at entry points and passed down."""

from __future__ import annotations

import difflib
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from genq import constants as c
from genq.stack_file import StackFileSource

# Broker URL schemes kombu serves over AMQP 0-9-1 (RabbitMQ).
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "genq"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _parse_weights(value: str) -> dict[str, float]:
    """``"acme=2, beta=0.5"`` as ``{"acme": 2.0, "beta": 0.5}``."""
    weights = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, sep, weight = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            weights[name.strip()] = float(weight)
        except ValueError:
            raise ValueError(f"tenant weight {part!r} is not tenant=number") from None
    return weights


class Settings(BaseSettings):
    """Everything configurable. Secrets are ``SecretStr`` so reprs and logs never show them."""

    model_config = SettingsConfigDict(env_prefix="GENQ_", extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    # The Celery broker: unset, Redis (redis_url) is the broker too; amqp://user:pass@host/vhost
    # makes it RabbitMQ, and Redis keeps the chunk streams, rate limits, leases and replies
    # (docs/brokers.md).
    broker_url: str | None = None
    # RabbitMQ only: quorum queues for the lanes instead of classic priority queues (no
    # priorities on RabbitMQ < 4.0; docs/brokers.md).
    rabbitmq_quorum: bool = False
    # RabbitMQ only: the broker's consumer_timeout (rabbitmq.conf; RabbitMQ's default is 30 min).
    # A worker warns at start when a job may run longer (visibility_timeout_seconds) on a broker
    # too old (< 3.12) to take genq's per-consumer timeout instead.
    rabbitmq_consumer_timeout_seconds: float = Field(default=1800.0, gt=0)
    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: SecretStr | None = None

    runtime_url: str | None = None
    runtime_kind: str = Field(default="openai", pattern="^(openai|ollama)$")
    runtime_api_key: SecretStr | None = None
    runtime_slots: int = Field(default=1, ge=1, le=256)
    default_model: str = c.EMBEDDED_MODEL_ALIAS
    embedded_port: int = Field(default=8089, ge=1, le=65535)
    embedded_model_path: Path | None = None
    embedded_context_tokens: int = c.EMBEDDED_CONTEXT_TOKENS
    runtime_read_timeout_seconds: float = c.RUNTIME_READ_TIMEOUT_SECONDS
    # A worker whose runtime cannot be reached holds its next job this long (probing each
    # second) before trying it anyway: a restarting runtime does not spend every queued
    # job's retries.
    runtime_wait_seconds: float = Field(default=c.RUNTIME_WAIT_SECONDS, ge=0)

    # The runtime fleet (docs/fleet.md): endpoints from a TOML/YAML file, or a JSON list in
    # GENQ_RUNTIMES; without either the runtime_* settings above are a one-endpoint fleet.
    runtimes_file: Path | None = None
    runtimes: str | None = None
    # Dispatch through the fleet's backlog (release a job into the broker only with a slot,
    # so no endpoint runs more than its slots across every worker on every host). Always on
    # for a declared fleet; false sends the one-endpoint fleet's jobs straight to the broker,
    # where each worker bounds only its own in-flight jobs (docs/fleet.md).
    fleet_dispatch: bool = True
    fleet_slot_lease_seconds: float = Field(default=15.0, gt=0)
    fleet_breaker_failures: int = Field(default=3, ge=1)
    fleet_breaker_cooldown_seconds: float = Field(default=10.0, gt=0)
    fleet_tick_seconds: float = Field(default=0.5, gt=0)

    lanes: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(c.DEFAULT_LANES))
    default_lane: str = c.LANE_INTERACTIVE

    max_retries: int = Field(default=c.MAX_RETRIES, ge=0, le=100)
    backoff_base_seconds: float = Field(default=c.BACKOFF_BASE_SECONDS, ge=0)
    backoff_cap_seconds: float = Field(default=c.BACKOFF_CAP_SECONDS, ge=0)
    lease_seconds: float = Field(default=c.LEASE_SECONDS, gt=0)
    lease_renew_seconds: float = Field(default=c.LEASE_RENEW_SECONDS, gt=0)
    sweep_interval_seconds: float = Field(default=c.SWEEP_INTERVAL_SECONDS, gt=0)
    crash_limit: int = Field(default=c.CRASH_LIMIT, ge=1)
    # A queued job not started this long after it was (re)queued has its message re-sent by
    # the sweep: it covers a message lost between the broker handing it out and the worker
    # recording it as unacked (a worker killed in that instant). Duplicates are harmless.
    redispatch_after_seconds: float = Field(default=c.REDISPATCH_AFTER_SECONDS, gt=0)
    # A reply claimed for publishing this long ago without being published belongs to a
    # publisher that died in between; the sweep publishes it instead.
    reply_claim_seconds: float = Field(default=c.REPLY_CLAIM_SECONDS, gt=0)
    visibility_timeout_seconds: int = c.VISIBILITY_TIMEOUT_SECONDS
    shutdown_grace_seconds: float = 30.0

    stream_coalesce_ms: int = Field(default=c.STREAM_COALESCE_MS, ge=0)
    stream_maxlen: int = Field(default=c.STREAM_MAXLEN, ge=100)
    stream_ttl_seconds: int = Field(default=c.STREAM_TTL_SECONDS, ge=1)

    retention_finished_seconds: int = 7 * 86400
    retention_dead_letter_seconds: int = 30 * 86400

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    admin_key: SecretStr | None = None
    rate_limit_per_second: float = 200.0
    rate_limit_burst: int = 400
    max_body_bytes: int = 1_000_000
    max_queued_per_tenant: int = 10_000

    webhook_timeout_seconds: float = c.WEBHOOK_TIMEOUT_SECONDS
    webhook_retry_schedule_seconds: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [float(s) for s in c.WEBHOOK_RETRY_SCHEDULE_SECONDS]
    )
    webhook_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_secret: SecretStr | None = None

    flower_port: int = 5555
    flower_basic_auth: SecretStr | None = None
    metrics_port: int = 9808

    log_level: str = "INFO"
    log_json: bool = True

    # The name this host goes by in worker node names (``name-pid@host``), lease holders,
    # the sweep leader and the ``genq_sweeps_total`` metric. Each host of a deployment needs
    # its own; the machine's host name is (containers get one each).
    hostname: str = Field(default_factory=socket.gethostname, min_length=1, pattern=r"^[^@/\s]+$")

    @field_validator("lanes", "webhook_allow", "webhook_retry_schedule_seconds", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("tenant_weights", mode="before")
    @classmethod
    def _weights(cls, value: object) -> object:
        return _parse_weights(value) if isinstance(value, str) else value

    @field_validator("tenant_weights")
    @classmethod
    def _positive_weights(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(name for name, weight in value.items() if not weight > 0)
        if bad:
            raise ValueError(f"tenant weights must be > 0 (tenants {bad})")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init kwargs, then the environment, then what a running ``genq up`` recorded in the
        data dir (its Redis, ports, model: see ``genq.stack_file``), then the defaults."""
        above = (init_settings, env_settings, dotenv_settings, file_secret_settings)
        return (*above, StackFileSource(settings_cls, above, _default_data_dir))

    @property
    def store_url(self) -> str:
        """The SQLAlchemy URL of the result store; SQLite in the data dir by default."""
        if self.database_url:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'genq.db'}"

    @property
    def effective_broker_url(self) -> str:
        """The Celery broker's URL: ``broker_url``, or Redis when it is unset."""
        return self.broker_url or self.redis_url

    @property
    def broker_is_amqp(self) -> bool:
        """True when the broker is RabbitMQ (an AMQP URL), not Redis."""
        return self.effective_broker_url.split("://", 1)[0].lower() in AMQP_SCHEMES

    @property
    def embedded(self) -> bool:
        """True when no external runtime is configured and genq runs its own."""
        return not self.runtime_url

    @property
    def effective_runtime_url(self) -> str:
        return self.runtime_url or f"http://127.0.0.1:{self.embedded_port}"

    def queue_for(self, lane: str) -> str:
        return f"{c.QUEUE_PREFIX}{lane}"

    # How long the gateway trusts an API key it verified before it asks the store again, i.e.
    # how long a revoked key may still work. 0 asks the store on every request.
    gateway_key_cache_seconds: float = Field(default=c.GATEWAY_KEY_CACHE_SECONDS, ge=0)
    # Threads for the gateway's store and broker calls. More rarely help: they share one GIL
    # (and, on SQLite, one writer); measured best at 2-4 on two cores.
    gateway_threads: int = Field(default=c.GATEWAY_THREADS, ge=1, le=256)
    # Gateway processes (uvicorn workers); each has its own connections and memory.
    gateway_workers: int = Field(default=1, ge=1, le=64)
    # An SSE stream with nothing to send (its job still queued) sends a keep-alive comment
    # this often, so proxies and clients do not take it for a dead connection.
    gateway_sse_ping_seconds: float = Field(default=c.GATEWAY_SSE_PING_SECONDS, gt=0)

    # Where Flower and the metrics exporter listen. Loopback by default;
    # compose.yaml sets 0.0.0.0 inside containers, where Flower then requires basic auth.
    flower_host: str = "127.0.0.1"
    metrics_host: str = "127.0.0.1"

    # What a chat or completion job without ``max_tokens`` gets (not embeddings).
    default_max_tokens: int = Field(default=c.DEFAULT_MAX_TOKENS, ge=1, le=32768)

    # The OpenAI routes answer 429 (Retry-After) while a model has this many jobs queued,
    # rather than hold one more connection open for a turn that is far away.
    openai_max_queued: int = Field(default=c.OPENAI_MAX_QUEUED, ge=1)
    # A client that sent an Idempotency-Key and hung up has this long to come back for its
    # job (a retry) before the job is cancelled.
    openai_reattach_seconds: float = Field(default=c.OPENAI_REATTACH_SECONDS, ge=0)

    # Files and batches (/v1/files, /v1/batches): the largest upload, the most lines a batch
    # may have, the completion window a batch gets (the API accepts only "24h"; tests shorten
    # it to see batches expire) and how often a gateway moves batches along.
    files_max_bytes: int = Field(default=c.FILES_MAX_BYTES, ge=1)
    batch_max_lines: int = Field(default=c.BATCH_MAX_LINES, ge=1)
    batch_completion_window_seconds: float = Field(default=c.BATCH_COMPLETION_WINDOW_SECONDS, gt=0)
    batch_drive_seconds: float = Field(default=c.BATCH_DRIVE_SECONDS, gt=0)

    # Fair share between tenants (VTC): each tenant's weight ("acme=2,beta=1"; others 1), and
    # what a prompt token and a generated token cost in its virtual counter (VTC's w_p, w_q).
    tenant_weights: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    fair_prompt_token_cost: float = Field(default=1.0, ge=0)
    fair_output_token_cost: float = Field(default=2.0, ge=0)
    # The most slots an endpoint with slots = "auto" may grow to.
    adaptive_max_slots: int = Field(default=8, ge=1, le=256)


# A name people reach for that difflib would not lead to (the store's URL is database_url).
_SETTING_ALIASES = {"GENQ_STORE_URL": "GENQ_DATABASE_URL"}
_NOT_SETTINGS = frozenset({"GENQ_BENCH_RUNTIME"})  # read by benchmarks/, not a setting


def _known_env_names() -> list[str]:
    return sorted(f"GENQ_{name.upper()}" for name in Settings.model_fields)


def unknown_env_names(environ: Mapping[str, str]) -> list[str]:
    """The ``GENQ_*`` variables of ``environ`` that are no setting (so they are ignored)."""
    known = set(_known_env_names()) | set(_NOT_SETTINGS)
    # pydantic-settings reads the environment case-insensitively
    return [n for n in sorted(environ) if n.upper().startswith("GENQ_") and n.upper() not in known]


def unknown_env_warnings(environ: Mapping[str, str]) -> list[str]:
    """One message per ``GENQ_*`` variable that is no setting (so it is ignored), naming the
    closest real one. Entry points log them once at start."""
    known = _known_env_names()
    messages = []
    for name in unknown_env_names(environ):
        upper = name.upper()
        close = difflib.get_close_matches(upper, known, n=1)
        hint = _SETTING_ALIASES.get(upper) or (close[0] if close else None)
        advice = f"; did you mean {hint}?" if hint else "; see genq/settings.py for the settings"
        messages.append(f"environment variable {name} is not a genq setting and is ignored{advice}")
    return messages
