"""`vlm serve`: vLLM's own OpenAI-compatible server, configured from a profile."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from vlmcli.commands.common import ProfileOption, VerboseOption, run_settings
from vlmcli.settings import Overrides


def serve(
    profile: ProfileOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 exposes the server to your network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="VLM_API_KEY", help="Require this key from clients (Bearer token).", show_default=False)] = None,
    media_root: Annotated[Optional[str], typer.Option(help="Clients may name local files (file://) only below this folder.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the vLLM command and exit.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Serve a model with vLLM's OpenAI-compatible API (/v1/chat/completions) until Ctrl+C."""
    from vlmcli.render import messages
    from vlmcli.server import build_command, serve_forever

    settings = run_settings(profile, Overrides(media_root=media_root))
    command = build_command(settings, host, port, api_key)
    if dry_run:
        print(command.shell())
        return

    def say(line: str) -> None:
        print(f"vlm: {line}", file=messages(), flush=True)

    say(f"profile {settings.profile_name}: model {settings.model}, served as {command.argv[command.argv.index('--served-model-name') + 1]}")
    code = serve_forever(command, verbose=verbose, say=say)
    raise typer.Exit(code)
