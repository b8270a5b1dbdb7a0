"""`vlm chat`: an interactive multimodal conversation (scriptable when stdin is a pipe)."""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Annotated, Optional

import typer

from vlmcli.commands.common import ProfileOption, VerboseOption, run_settings
from vlmcli.settings import Overrides


def chat(
    media: Annotated[Optional[list[str]], typer.Argument(help="Images or videos to start with (paths or URLs).", show_default=False)] = None,
    profile: ProfileOption = None,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="System prompt (default: the profile's).")] = None,
    stats: Annotated[bool, typer.Option("--stats", help="Show time to first token, tokens/s and token counts after each answer.")] = False,
    media_root: Annotated[Optional[str], typer.Option(help="Only read local files below this folder.")] = None,
    server: Annotated[Optional[str], typer.Option("--server", envvar="VLM_SERVER", help="Use a running `vlm serve` at this URL instead of loading the model.", show_default=False)] = None,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="VLM_API_KEY", help="API key for --server.", show_default=False)] = None,
    verbose: VerboseOption = False,
) -> None:
    """Chat with a model about images and videos; answers stream as they are written.

    On a terminal: /help lists commands, Tab completes, Ctrl+C stops an answer, Ctrl+D leaves.
    With stdin from a pipe: one message or /command per line, plain answers separated by blank lines.
    """
    settings = run_settings(profile, Overrides(media_root=media_root))
    try:
        asyncio.run(_chat(settings, media or [], system, stats, verbose, server, api_key))
    except KeyboardInterrupt:  # Ctrl+C while the model loads
        raise typer.Exit(130) from None
    finally:
        gc.collect()  # let vLLM's AsyncLLM finalize now; at interpreter exit its __del__ raises


async def _chat(
    settings, media: list[str], system: str | None, stats: bool, verbose: bool, server: str | None, api_key: str | None
) -> None:
    # Imported here so that `vlm --help` never loads numpy, pillow, prompt_toolkit or vLLM.
    from vlmcli.chat import ChatSession, PlainUI, RichUI, run_plain, run_terminal
    from vlmcli.engine import engine_output
    from vlmcli.render import use_message_stream

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    with engine_output(verbose) as (log_path, message_stream):
        use_message_stream(message_stream)
        try:
            ui = RichUI() if interactive else PlainUI()
            session = ChatSession(None, settings, ui, system=system, show_stats=stats)
            for reference in media:  # before the model loads: a bad file is reported at once
                session.attach(reference)
            engine = session.engine = await _open_engine(settings, log_path, server, api_key)
            try:
                await (run_terminal(session) if interactive else run_plain(session))
            finally:
                if server:
                    await engine.aclose()
                else:
                    engine.shutdown()
        finally:
            use_message_stream(None)


async def _open_engine(settings, log_path, server: str | None, api_key: str | None):
    """The engine the chat talks to: anything with `.chat(turns, system_prompt=..., **sampling)`."""
    from vlmcli.engine import Engine
    from vlmcli.render import progress

    if server:
        from vlmcli.client import RemoteEngine

        return await RemoteEngine.connect(settings, server, api_key=api_key)

    with progress(f"Loading {settings.model} (profile {settings.profile_name})…"):
        return await Engine.start(settings, log_path)

