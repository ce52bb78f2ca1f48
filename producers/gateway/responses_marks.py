"""What a response's job remembers of the request beyond its messages: one metadata key of
genq's own, ``genq_response``. Pure.

Its presence marks the job as a response (``/v1/responses/{id}`` finds only those); its value
is a comma-separated list: ``background``, ``instructions`` (the first message holds them),
``previous=<response id>`` and ``context=<n>`` (the n messages after the instructions came
from that previous response).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.responses import RESPONSE_MARKER

MARKER = RESPONSE_MARKER
BACKGROUND = "background"
INSTRUCTIONS = "instructions"
PREVIOUS = "previous="
CONTEXT = "context="


@dataclass(frozen=True)
class ResponseMarks:
    background: bool = False
    instructions: bool = False
    previous: str | None = None
    context: int = 0

    def encode(self) -> str:
        tokens = [BACKGROUND] if self.background else []
        if self.instructions:
            tokens.append(INSTRUCTIONS)
        if self.previous is not None:
            tokens += [f"{PREVIOUS}{self.previous}", f"{CONTEXT}{self.context}"]
        return ",".join(tokens)


def marks_of(metadata: dict[str, str]) -> ResponseMarks | None:
    """The marks a job's metadata carries; None for a job that is not a response."""
    value = metadata.get(MARKER)
    if value is None:
        return None
    tokens = [token for token in value.split(",") if token]
    previous = next((t.removeprefix(PREVIOUS) for t in tokens if t.startswith(PREVIOUS)), None)
    context = next((t.removeprefix(CONTEXT) for t in tokens if t.startswith(CONTEXT)), "0")
    return ResponseMarks(
        background=BACKGROUND in tokens,
        instructions=INSTRUCTIONS in tokens,
        previous=previous,
        context=int(context) if context.isdigit() else 0,
    )


def user_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """A response's metadata as its creator sent it (without genq's key)."""
    return {name: value for name, value in metadata.items() if name != MARKER}
