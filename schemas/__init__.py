"""The contracts: wire models, the job state machine, priority mapping and error codes. No I/O."""

from schemas.errors import (
    BrokerUnavailable,
    Conflict,
    ErrorCode,
    GenqError,
    InvalidRequest,
    NotFound,
    PermanentError,
    RateLimited,
    TransientError,
    Unauthorized,
)
from schemas.jobs import (
    ChatMessage,
    ErrorInfo,
    GenerationParams,
    HistoryEntry,
    JobKind,
    JobRecord,
    JobRequest,
    JobResult,
    Usage,
)
from schemas.priority import PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN, celery_priority
from schemas.states import TERMINAL_STATES, JobStatus, can_transition, sources_for

__all__ = [
    "PRIORITY_DEFAULT",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "TERMINAL_STATES",
    "BrokerUnavailable",
    "ChatMessage",
    "Conflict",
    "ErrorCode",
    "ErrorInfo",
    "GenerationParams",
    "GenqError",
    "HistoryEntry",
    "InvalidRequest",
    "JobKind",
    "JobRecord",
    "JobRequest",
    "JobResult",
    "JobStatus",
    "NotFound",
    "PermanentError",
    "RateLimited",
    "TransientError",
    "Unauthorized",
    "Usage",
    "can_transition",
    "celery_priority",
    "sources_for",
]
