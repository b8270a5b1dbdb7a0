"""`vlm chat`: an interactive multimodal conversation (scriptable when stdin is a pipe)."""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Annotated, Optional

import typer

from vlmcli.commands.common import (
    ApiKeyOption, InProcessOption, KeepAliveOption, ProfileOption, ServerOption, VerboseOption, run_settings,
)
from vlmcli.settings import Overrides


def chat(
    media: Annotated[Optional[list[str]], typer.Argument(help="Images or videos to start with (paths or URLs).", show_default=False)] = None,
    profile: ProfileOption = None,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="System prompt (default: the profile's).")] = None,
    stats: Annotated[bool, typer.Option("--stats", help="Show time to first token, tokens/s and token counts after each answer.")] = False,
    media_root: Annotated[Optional[str], typer.Option(help="Only read local files below this folder.")] = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    in_process: InProcessOption = False,
    keep_alive: KeepAliveOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Chat with a model about images and videos; answers stream as they are written.

    On a terminal: /help lists commands, Tab completes, Ctrl+C stops an answer, Ctrl+D leaves.
    With stdin from a pipe: one message or /command per line, plain answers separated by blank lines.
    """
    from vlmcli.session import engine_choice

    # One question at a time: preprocessing workers would not help, and vLLM's own front end keeps
    # the processed images of earlier turns in its cache.
    settings = run_settings(profile, Overrides(media_root=media_root, workers=0))
    choice = engine_choice(server, api_key, in_process, keep_alive)
    try:
        asyncio.run(_chat(settings, media or [], system, stats, verbose, choice))
    except KeyboardInterrupt:  # Ctrl+C while the model loads
        raise typer.Exit(130) from None
    finally:
        gc.collect()  # let vLLM's AsyncLLM finalize now; at interpreter exit its __del__ raises


async def _chat(settings, media: list[str], system: str | None, stats: bool, verbose: bool, choice) -> None:
    # Imported here so that `vlm --help` never loads numpy, pillow, prompt_toolkit or vLLM.
    from vlmcli.chat import ChatSession, PlainUI, RichUI, run_plain, run_terminal
    from vlmcli.session import model_session

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    async with model_session(choice, verbose) as models:
        ui = RichUI() if interactive else PlainUI()
        session = ChatSession(None, settings, ui, system=system, show_stats=stats)
        for reference in media:  # before the model loads: a bad file is reported at once
            session.attach(reference)
        session.engine = await models.open(settings)
        await (run_terminal(session) if interactive else run_plain(session))
