"""The worker's adaptations of kombu, Celery and redis-py internals; the only other place
with any is ``genq.internals`` (those producers use too, and the version table of both).

Each module here overrides or drives something that is not a public API, so a new release of
the library can break it without a deprecation. :mod:`genq.internals.versions` records
the versions each one mirrors; ``tests/unit/test_internals.py`` fails when an installed
library is outside that range or no longer has what the code reaches into.

- :mod:`~workers.internals.transport`: kombu's Redis transport
  (``kombu.transport.redis.Channel`` and ``QoS``), extending genq's
  (:mod:`genq.internals.transport`: one client per connection pool). ``_brpop_read`` is
  copied from kombu with one change: an item that is not a JSON envelope is quarantined
  instead of crashing the worker. ``QoS.append``/``ack`` write kombu's unacked record through
  :mod:`~workers.internals.deferred`.
- :mod:`~workers.internals.deferred`: sends Redis writes on a connection of redis-py's pool
  (``pack_commands``, ``send_packed_command``, ``can_read``, ``read_response``) and reads
  their answers later.
- :mod:`~workers.internals.consumer`: Celery's worker ``Consumer``; its "cannot run this
  message" hooks dead-letter instead of dropping, and task events go out in groups.

Upgrading one of these libraries: read its source of each thing named above, adjust, run
``tests/unit/test_internals.py`` and ``test_deferred_writes.py`` and the integration tests
``test_deferred_writes_redis.py``, ``test_transport_qos.py``, ``test_dead_letters.py`` and
``test_producer_transport.py``, then widen the range in :mod:`genq.internals.versions` and in
pyproject.toml (a test keeps the two equal).
"""

from genq.internals.versions import MIRRORED_VERSIONS, unmirrored_versions
from workers.internals.consumer import DeadLetteringConsumer
from workers.internals.deferred import DeferredWrites
from workers.internals.transport import Transport

__all__ = [
    "MIRRORED_VERSIONS",
    "DeadLetteringConsumer",
    "DeferredWrites",
    "Transport",
    "unmirrored_versions",
]
