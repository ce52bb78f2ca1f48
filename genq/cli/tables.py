"""The CLI's tables (rich). Ids are never cut: the next command needs them whole."""

from __future__ import annotations

from collections.abc import Collection

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

__all__ = ["id_table", "print_table"]

# Wide enough to measure any table at its natural width.
_UNBOUNDED_WIDTH = 100_000


def id_table(*headers: str, ids: Collection[str]) -> Table:
    """A table whose ``ids`` columns never wrap or shorten; the other columns wrap."""
    table = Table()
    for header in headers:
        if header in ids:
            table.add_column(header, no_wrap=True, overflow="ignore")
        else:
            table.add_column(header, overflow="fold")
    return table


def print_table(table: Table) -> None:
    """Print ``table`` at the terminal's width, or as wide as its whole ids need when that is
    more (the terminal then wraps the lines, but each id stays one string to copy)."""
    console = Console()
    options = console.options.update_width(_UNBOUNDED_WIDTH)
    needed = Measurement.get(console, options, table).minimum
    if needed > console.width:
        console = Console(width=needed)
    console.print(table)
