"""`vlm stop`: stop background model servers now instead of at the end of their keep-alive."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from vlmcli.commands.common import complete_profile


def stop(
    profile: Annotated[Optional[str], typer.Argument(help="Stop this profile's server(s) (default: the only one running).", autocompletion=complete_profile, show_default=False)] = None,
    every: Annotated[bool, typer.Option("--all", help="Stop every background server.")] = False,
) -> None:
    """Stop background model servers (see `vlm ps`); exit code 1 if none matches."""
    from vlmcli.keepalive import select_servers, stop_selected

    records = select_servers(profile, every)
    stop_selected(records)
    for record in records:
        print(f"stopped {record.profile} (pid {record.pid}, {record.url})")
