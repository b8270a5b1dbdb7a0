"""`vlm bench` (not built yet)."""

from __future__ import annotations

import typer


def bench() -> None:
    """Not ready yet: this command is being built (see the project's issues)."""
    from vlmcli.render import error_line

    error_line("vlm bench is not ready yet")
    raise typer.Exit(2)
