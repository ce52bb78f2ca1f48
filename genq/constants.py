"""Every queue name, key prefix and default timing in one place, with units in the names."""

from __future__ import annotations

QUEUE_PREFIX = "genq."
LANE_INTERACTIVE = "interactive"
LANE_BATCH = "batch"
DEFAULT_LANES = (LANE_INTERACTIVE, LANE_BATCH)
WEBHOOK_QUEUE = "genq.webhooks"
DEAD_LETTER_QUEUE = "genq.dead_letter"
MAINTENANCE_QUEUE = "genq.maintenance"

TASK_GENERATE = "genq.generate"
TASK_EMBED = "genq.embed"
TASK_DELIVER_WEBHOOK = "genq.deliver_webhook"

REDIS_KEY_PREFIX = "genq:"
STREAM_KEY_PREFIX = f"{REDIS_KEY_PREFIX}stream:"
CANCEL_KEY_PREFIX = f"{REDIS_KEY_PREFIX}cancel:"
RATE_KEY_PREFIX = f"{REDIS_KEY_PREFIX}rate:"
REPLY_SENT_KEY_PREFIX = f"{REDIS_KEY_PREFIX}reply-sent:"

# Broker redelivery of an unacked message; must exceed the longest job. Leases do recovery.
VISIBILITY_TIMEOUT_SECONDS = 12 * 3600
LEASE_SECONDS = 15
LEASE_RENEW_SECONDS = 5
SWEEP_INTERVAL_SECONDS = 5
# One beat sweeps at a time across hosts: the one holding this lease in Redis (a sweep
# interval long, extended every quarter interval; workers/leader.py). A leader whose sweep
# loop has not turned for SWEEP_STALL_SECONDS gives the lead up. Each sweep is counted per
# host (genq_sweeps_total) in SWEEP_COUNTS_KEY, its time in SWEEP_LAST_KEY.
SWEEP_LEADER_KEY = f"{REDIS_KEY_PREFIX}beat:leader"
SWEEP_COUNTS_KEY = f"{REDIS_KEY_PREFIX}beat:sweeps"
SWEEP_LAST_KEY = f"{REDIS_KEY_PREFIX}beat:last-sweep"
SWEEP_STALL_SECONDS = 60.0
BEAT_TICK_SECONDS = 0.5
CRASH_LIMIT = 3

MAX_RETRIES = 5
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0

# A Redis that has not answered a command in this long is gone (redis-py >= 6 defaults to 5 s,
# older ones wait forever: said here so every client behaves alike).
REDIS_SOCKET_TIMEOUT_SECONDS = 5.0
REDIS_CONNECT_TIMEOUT_SECONDS = 2.0
# One blocking read (XREAD BLOCK) waits at most this long, well inside the socket timeout that
# would otherwise cut it off; a longer wait is several such reads.
REDIS_BLOCK_SLICE_MS = 2000

STREAM_COALESCE_MS = 15
STREAM_MAXLEN = 20_000
STREAM_TTL_SECONDS = 3600
CANCEL_POLL_SECONDS = 0.1
CANCEL_FLAG_TTL_SECONDS = 24 * 3600

# `genq up` restarts a crashed component after 1 s, doubling while it keeps crashing (each crash
# within the window of the one before), up to the cap; it gives up on one that crashed
# STACK_CRASH_LIMIT times within the window.
STACK_RESTART_FIRST_DELAY_SECONDS = 1.0
STACK_RESTART_MAX_DELAY_SECONDS = 30.0
STACK_CRASH_LIMIT = 5
STACK_CRASH_WINDOW_SECONDS = 60.0

RUNTIME_CONNECT_TIMEOUT_SECONDS = 5.0
RUNTIME_READ_TIMEOUT_SECONDS = 300.0
# How long a worker holds its next job while the runtime cannot be reached
# (workers/runtime_gate.py).
RUNTIME_WAIT_SECONDS = 300.0
RUNTIME_HEALTH_TIMEOUT_SECONDS = 2.0

EMBEDDED_MODEL_ALIAS = "gemma3-270m"
EMBEDDED_CONTEXT_TOKENS = 2048
# What a chat/completion job without max_tokens gets: a small model may otherwise run on
# until its context is full (2,000 tokens, a minute on the embedded runtime).
DEFAULT_MAX_TOKENS = 256

WEBHOOK_TIMEOUT_SECONDS = 15.0
# Svix-like: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
WEBHOOK_RETRY_SCHEDULE_SECONDS = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)

# HTTP gateway: long polls (/wait), SSE streams, API keys, the per-tenant queued cap.
GATEWAY_WAIT_DEFAULT_SECONDS = 30.0
GATEWAY_WAIT_MAX_SECONDS = 300.0
# An idle stream reader re-checks the store this often, in case the end entry never comes
# (the stream expired, or its writer died before closing it).
GATEWAY_STORE_RECHECK_SECONDS = 5.0
# A job terminal for this long has no stream left to wait for (expired, or Redis lost it):
# readers answer from its record at once. Sooner, a reader first gives the stream's writer one
# recheck interval to close it (producers/gateway/streaming.py, ``Silence``).
GATEWAY_STREAM_GONE_SECONDS = 60.0
GATEWAY_SSE_PING_SECONDS = 15.0
GATEWAY_QUEUE_FULL_RETRY_AFTER_SECONDS = 5
GATEWAY_KEY_CACHE_SECONDS = 5.0
# How stale the per-tenant queued count may get before the cap check reads it again.
GATEWAY_QUEUED_RECOUNT_SECONDS = 1.0
GATEWAY_THREADS = 4

# The OpenAI routes: the queued jobs a model may have before they answer 429, the priority
# of a request without X-Genq-Priority, how long the runtime's model list is trusted.
OPENAI_MAX_QUEUED = 1000
OPENAI_DEFAULT_PRIORITY = 7
OPENAI_MODELS_CACHE_SECONDS = 10.0
# A client that sent an Idempotency-Key and hung up gets this long to come back (the SDK
# retries within seconds) before its job is cancelled; who is still waiting is a Redis set.
OPENAI_REATTACH_SECONDS = 30.0
OPENAI_WAITERS_KEY_PREFIX = f"{REDIS_KEY_PREFIX}openai-waiters:"
OPENAI_WAITERS_TTL_SECONDS = 86400
# /v1/responses: how long cancel and delete wait for a running response to stop (it stops
# between chunks, within a second) before answering with it as it stands.
RESPONSES_STOP_WAIT_SECONDS = 5.0

# Webhooks: secrets and their rotation, dispatch from the outbox, delivery attempts.
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_SECRET_BYTES = 24
# How long a rotated-out secret keeps signing next to the new one (Svix: 24 h).
WEBHOOK_ROTATION_OVERLAP_SECONDS = 24 * 3600
# A dispatched delivery is not re-sent by the sweep before this; its message may be lost.
WEBHOOK_DISPATCH_LEASE_SECONDS = 30
# A claimed delivery is in flight for its timeout plus this; then the sweep may retry it.
WEBHOOK_CLAIM_MARGIN_SECONDS = 10
WEBHOOK_DISPATCH_BATCH = 500
WEBHOOK_RESPONSE_EXCERPT_CHARS = 512
WEBHOOK_USER_AGENT = "genq-webhooks/1"

# Raw broker items that were not even a message envelope, waiting for the sweep to dead-letter.
QUARANTINE_KEY = f"{REDIS_KEY_PREFIX}quarantine"

# A queued job not picked up this long after it was stored is re-sent by the sweep (its message
# may have been lost with a crashed producer); later re-sends back off with the job's age.
REDISPATCH_AFTER_SECONDS = 600
REPLY_CLAIM_SECONDS = 30.0
# A published reply's marker (genq.reply_publisher): while it lasts, publishing that reply
# again is a no-op. It must outlive any re-publish, i.e. a publisher that died before
# recording the reply (the sweep takes over after REPLY_CLAIM_SECONDS) or a store that could
# not record it for that long. One small key per reply.
REPLY_SENT_MARKER_SECONDS = 24 * 3600

# Files and batches (/v1/files, /v1/batches). A file's bytes are stored in rows of this size;
# an upload buffers at most one of them.
FILE_CHUNK_BYTES = 1024 * 1024
FILES_MAX_BYTES = 200 * 1024 * 1024
# An upload still unfinished this long after it started lost its writer: it is purged.
FILE_UPLOAD_ABANDONED_SECONDS = 3600
BATCH_MAX_LINES = 50_000
BATCH_COMPLETION_WINDOW_SECONDS = 24 * 3600
BATCH_DEFAULT_PRIORITY = 2
# Lines stored (and published) per transaction when a batch is queued, and how long one driver
# pass queues lines (oldest batch first) before it moves on (the next pass resumes).
BATCH_LINES_PER_TRANSACTION = 500
BATCH_QUEUE_SECONDS_PER_PASS = 20.0
# Queued lines of a cancelled or expired batch settled per pass (workers settle the rest as they
# get them: every open line is flagged first).
BATCH_STOP_LINES_PER_PASS = 500
# How often a gateway moves batches along (validates and queues, finalizes, cancels, expires),
# one gateway at a time across processes under this Redis lock.
BATCH_DRIVE_SECONDS = 2.0
BATCH_LOCK_KEY = f"{REDIS_KEY_PREFIX}batches:lock"
BATCH_LOCK_SECONDS = 120
