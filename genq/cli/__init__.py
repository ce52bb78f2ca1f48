"""The ``genq`` command, genq's composition root: the CLI commands, the local stack behind
``genq up`` and the demonstration. The only package that imports both ``producers`` and
``workers``; nothing below it imports it."""

__all__ = ["main"]

from genq.cli.app import main
