"""Adaptations of kombu internals that producers and workers both use, and the table of the
library versions every adaptation in genq mirrors.

Like ``workers.internals`` (the worker's own adaptations: its transport's QoS and BRPOP, the
deferred writes, Celery's consumer), each module here overrides something that is not a
public API, so a new release of the library can break it without a deprecation. They live
here, in genq's core, because producers use them too and never import ``workers``.
``tests/unit/test_internals.py`` fails when an installed library is outside the ranges in
:mod:`~genq.internals.versions` or no longer has what the code reaches into.

- :mod:`~genq.internals.transport`: kombu's Redis transport (``kombu.transport.redis``) whose
  ``Channel._create_client`` returns one client per connection pool. Every Celery app genq
  builds for a Redis broker uses it (``genq.celery_app``); the worker's transport extends it.

Upgrading kombu, Celery or redis-py: see ``workers.internals`` for the whole list of what to
read and run, then widen the range in :mod:`~genq.internals.versions` and pyproject.toml.
"""

from genq.internals.transport import Channel, Transport, transport_for
from genq.internals.versions import MIRRORED_VERSIONS, installed_version, unmirrored_versions

__all__ = [
    "MIRRORED_VERSIONS",
    "Channel",
    "Transport",
    "installed_version",
    "transport_for",
    "unmirrored_versions",
]
