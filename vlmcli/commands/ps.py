"""`vlm ps`: the background model servers that are running, and how long each stays loaded."""

from __future__ import annotations

import json
import sys
from typing import Any

from vlmcli.commands.common import JsonOption

HEADERS = ("profile", "state", "address", "pid", "memory", "idle", "keep-alive left")


def ps(json_output: JsonOption = False) -> None:
    """List running background model servers: profile, state, address, memory, idle time, keep-alive left."""
    from vlmcli.keepalive import running_servers, server_status

    statuses = [server_status(record) for record in running_servers()]
    if json_output:
        print(json.dumps(statuses, indent=2))
        return
    rows = [_row(status) for status in statuses]
    if not sys.stdout.isatty():
        for row in rows:
            print("\t".join(row))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not rows:
        console.print("no background model servers are running", style="dim")
        return
    table = Table(*HEADERS, header_style="bold", box=None)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _row(status: dict[str, Any]) -> list[str]:
    from vlmcli.config import format_duration

    state = status["state"]
    if state == "starting":
        state = f"starting: {status['stage']}"
    memory = _gib(status["host_memory_bytes"])
    if status["gpu_memory_bytes"]:
        memory += f" + {_gib(status['gpu_memory_bytes'])} GPU"
    if status["in_flight"]:
        idle = f"busy ({status['in_flight']} request{'s' if status['in_flight'] > 1 else ''})"
    elif status["attached"]:
        idle = "in use"
    else:
        idle = format_duration(status["idle_s"])
    left = "-" if status["keep_alive_left_s"] is None else format_duration(status["keep_alive_left_s"])
    return [status["profile"], state, status["url"], str(status["pid"]), memory, idle, left]


def _gib(count: int) -> str:
    return f"{count / 2**30:.1f} GiB"
