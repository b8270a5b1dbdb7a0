"""Options shared by several commands, and the step every model command starts with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from vlmcli.settings import Overrides, RunSettings


def complete_profile(incomplete: str) -> list[str]:
    """Shell completion for --profile: the names of built-in and user profiles."""
    from vlmcli.profiles import list_profiles

    return [name for name, _ in list_profiles() if name.startswith(incomplete)]


ProfileOption = Annotated[
    Optional[str],
    typer.Option(
        "--profile",
        "-P",
        help="Profile name or YAML file (default: $VLM_PROFILE, else nemotron-nano-12b-v2-vl-fp8).",
        autocompletion=complete_profile,
        show_default=False,
    ),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show vLLM's own log lines.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ServerOption = Annotated[
    Optional[str],
    typer.Option("--server", envvar="VLM_SERVER", help="Use a running `vlm serve` at this URL instead of loading the model.", show_default=False),
]
ApiKeyOption = Annotated[
    Optional[str], typer.Option("--api-key", envvar="VLM_API_KEY", help="API key for --server.", show_default=False)
]
InProcessOption = Annotated[
    bool,
    typer.Option(
        "--in-process",
        help="Load the model in this process for this command only, not in a background server "
        "(config: background: false; env VLM_BACKGROUND=0).",
    ),
]
KeepAliveOption = Annotated[
    Optional[str],
    typer.Option(
        "--keep-alive",
        help="How long the background server stays loaded after its last request: 30s, 10m, 1h; "
        "0 stops it when this command ends (default 5m; config keep_alive; env VLM_KEEP_ALIVE).",
        show_default=False,
    ),
]


def run_settings(profile: str | None, overrides: Overrides | None = None) -> RunSettings:
    """Load the profile and resolve it with the command-line overrides."""
    from vlmcli.profiles import load_profile
    from vlmcli.settings import resolve_settings

    return resolve_settings(load_profile(profile), overrides)
