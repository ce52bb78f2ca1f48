"""``genq up``: the local stack on loopback. :mod:`~genq.cli.stack.plan` says what runs,
:mod:`~genq.cli.stack.supervisor` runs and restarts it (under
:mod:`~genq.cli.stack.restart_policy`), :mod:`~genq.cli.stack.console` filters what it shows,
and :mod:`~genq.cli.stack.run` ties them together."""

__all__: list[str] = []
