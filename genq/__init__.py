"""genq: a queue-based job system for local LLM runtimes.

This package holds the core both sides share (settings, constants, the store, the chunk
stream, the Celery app and its configuration, dispatch, dead letters, the outbox, webhook
signing and the SSRF policy, metrics), which imports neither side, and, in ``genq.cli``, the
``genq`` command, which composes everything. The submitting side is ``producers``, the
processing side ``workers`` and ``tasks``; the contracts are ``schemas``.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
