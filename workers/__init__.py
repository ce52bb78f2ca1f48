"""The process side: Celery app factory, runtime adapters, entry points, the embedded runtime."""

__all__: list[str] = []
