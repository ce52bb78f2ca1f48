"""Celery tasks: thin orchestration of runtime call, store transition, stream, reply and outbox."""

__all__: list[str] = []
