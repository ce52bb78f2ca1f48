"""Wire models: what a producer submits and what a reader gets back. JSON only."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import (
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    UrlConstraints,
    field_validator,
    model_validator,
)

from schemas.errors import ErrorCode
from schemas.priority import PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN
from schemas.states import JobStatus

METADATA_MAX_ENTRIES = 16
METADATA_MAX_KEY_CHARS = 64
METADATA_MAX_VALUE_CHARS = 512
MAX_EXPIRES_IN_SECONDS = 7 * 86400

NonEmpty = Annotated[str, StringConstraints(min_length=1)]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$")]
LaneName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
QueueName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")]
WebhookUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["http", "https"], max_length=2048)]
# Booleans are not numbers in this API: strict, so JSON `true` is refused, not taken as 1.
# (An integer is still a valid Number; "5" and 5.0 are not valid Ints.)
Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]


class JobKind(StrEnum):
    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant"]
    content: Annotated[str, StringConstraints(max_length=1_000_000)]


class GenerationParams(_Strict):
    """Sampling parameters, each with the range the runtimes accept."""

    max_tokens: Int | None = Field(default=None, ge=1, le=32768)
    temperature: Number | None = Field(default=None, ge=0.0, le=2.0)
    top_p: Number | None = Field(default=None, gt=0.0, le=1.0)
    top_k: Int | None = Field(default=None, ge=0, le=1000)
    presence_penalty: Number | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: Number | None = Field(default=None, ge=-2.0, le=2.0)
    stop: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=4
    )
    seed: Int | None = Field(default=None, ge=0, le=2**63 - 1)

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class JobRequest(GenerationParams):
    """A generation job as submitted. Unknown fields are rejected."""

    kind: JobKind = JobKind.CHAT
    model: Name | None = None
    messages: list[ChatMessage] | None = None
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=1_000_000)] | None = None
    input: (
        Annotated[str, StringConstraints(min_length=1)]
        | Annotated[list[NonEmpty], Field(min_length=1, max_length=256)]
        | None
    ) = None
    priority: Int = Field(default=PRIORITY_DEFAULT, ge=PRIORITY_MIN, le=PRIORITY_MAX)
    lane: LaneName | None = None
    reply_to: QueueName | None = None
    webhook_url: WebhookUrl | None = None
    webhook_secret: (
        Annotated[str, StringConstraints(pattern=r"^whsec_[A-Za-z0-9+/=]{16,}$")] | None
    ) = None
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    expires_in: Number | None = Field(default=None, gt=0, le=MAX_EXPIRES_IN_SECONDS)
    deadline: datetime | None = None
    metadata: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=METADATA_MAX_KEY_CHARS)],
        Annotated[str, StringConstraints(max_length=METADATA_MAX_VALUE_CHARS)],
    ] = Field(default_factory=dict, max_length=METADATA_MAX_ENTRIES)

    @model_validator(mode="after")
    def _payload_matches_kind(self) -> Self:
        present = {
            name for name in ("messages", "prompt", "input") if getattr(self, name) is not None
        }
        wanted = {
            JobKind.CHAT: "messages",
            JobKind.COMPLETION: "prompt",
            JobKind.EMBEDDING: "input",
        }[self.kind]
        if wanted not in present:
            raise ValueError(f"a {self.kind.value} job needs '{wanted}'")
        extra = present - {wanted}
        if extra:
            raise ValueError(f"a {self.kind.value} job takes '{wanted}', not {sorted(extra)}")
        if self.kind is JobKind.CHAT and not self.messages:
            raise ValueError("messages must not be empty")
        if self.deadline is not None and self.deadline.tzinfo is None:
            raise ValueError("deadline must carry a timezone, e.g. 2026-01-01T12:00:00Z")
        if self.deadline is not None and self.expires_in is not None:
            raise ValueError("give either expires_in or deadline, not both")
        return self

    def generation_params(self) -> GenerationParams:
        """The sampling parameters alone, for a runtime adapter."""
        fields = GenerationParams.model_fields
        return GenerationParams(**{k: getattr(self, k) for k in fields})

    def public_dump(self) -> dict[str, object]:
        """The request as stored and shown back: JSON-safe and without the webhook secret."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"webhook_secret"})


class Usage(_Strict):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class JobResult(_Strict):
    text: str | None = None
    embeddings: list[list[float]] | None = None
    finish_reason: str | None = None


class ErrorInfo(_Strict):
    code: ErrorCode | str
    message: str
    retryable: bool = False


class HistoryEntry(_Strict):
    from_status: JobStatus | None
    to_status: JobStatus
    at: datetime
    worker: str | None = None
    reason: str | None = None


class JobRecord(BaseModel):
    """A job as read back from the store: the source of truth."""

    model_config = ConfigDict(extra="forbid")

    id: str
    status: JobStatus
    kind: JobKind
    model: str
    lane: str
    priority: int
    tenant: str = "default"
    request: dict[str, object]
    result: JobResult | None = None
    usage: Usage | None = None
    error: ErrorInfo | None = None
    attempts: int = 0
    worker_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    created_at: datetime
    started_at: datetime | None = None
    first_token_at: datetime | None = None
    finished_at: datetime | None = None
    deadline: datetime | None = None
    cancel_requested: bool = False
    history: list[HistoryEntry] | None = None
