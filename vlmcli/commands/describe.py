"""`vlm describe`: describe images and videos, streaming each answer."""

from __future__ import annotations

import asyncio
import gc
from typing import Annotated, Optional

import typer

from vlmcli.commands.common import (
    ApiKeyOption, InProcessOption, KeepAliveOption, ProfileOption, ServerOption, VerboseOption, run_settings,
)
from vlmcli.errors import UsageError
from vlmcli.settings import Overrides


def describe(
    inputs: Annotated[list[str], typer.Argument(help="Images or videos: paths, file://, http(s):// or data: URIs.", show_default=False)],
    prompt: Annotated[Optional[str], typer.Option("--prompt", "-p", help="What to ask (default: the profile's prompt for the media kind).")] = None,
    profile: ProfileOption = None,
    max_tokens: Annotated[Optional[int], typer.Option(min=1, help="Longest answer, in tokens.")] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0.0, max=2.0, help="Sampling temperature (0 = greedy).")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Sample videos at this many frames per second.")] = None,
    num_frames: Annotated[Optional[int], typer.Option(help="Sample exactly this many frames per video.")] = None,
    max_frames: Annotated[Optional[int], typer.Option(help="Never sample more frames than this.")] = None,
    pruning_rate: Annotated[Optional[float], typer.Option(help="Efficient Video Sampling: share of video tokens to prune, in [0, 1).")] = None,
    tiles: Annotated[Optional[int], typer.Option(help="Most image tiles (1..12 for Nemotron).")] = None,
    workers: Annotated[Optional[int], typer.Option(min=0, max=64, help="Processes that prepare requests beside the engine (in-process only; default: the profile's, auto).")] = None,
    media_root: Annotated[Optional[str], typer.Option(help="Only read local files below this folder.")] = None,
    together: Annotated[bool, typer.Option("--together", "-t", help="Show all inputs to the model in one prompt.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per input (JSON Lines).")] = False,
    verbose: VerboseOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    in_process: InProcessOption = False,
    keep_alive: KeepAliveOption = None,
) -> None:
    """Describe each image or video; answers stream as they are generated, in input order.

    The model stays loaded in a background server between commands (see `vlm ps`, `vlm stop`).
    """
    from vlmcli.session import engine_choice

    overrides = Overrides(
        max_tokens=max_tokens, temperature=temperature, fps=fps, num_frames=num_frames,
        max_frames=max_frames, pruning_rate=pruning_rate, tiles=tiles, media_root=media_root, workers=workers,
    )
    settings = run_settings(profile, overrides)
    if workers and server:
        raise UsageError("--workers: preprocessing workers belong to a model loaded here; they cannot be combined with --server")
    # Workers serve a model loaded in this process; the background server is vLLM's own front end.
    choice = engine_choice(server, api_key, in_process or bool(workers), keep_alive)
    failures = asyncio.run(_describe(settings, inputs, prompt, together, json_output, verbose, choice))
    gc.collect()  # let vLLM's AsyncLLM finalize now; at interpreter exit its __del__ raises
    if failures:
        raise typer.Exit(1)


async def _describe(
    settings, inputs: list[str], prompt: str | None, together: bool, json_output: bool, verbose: bool, choice,
) -> int:
    # Imported here so that `vlm --help` never loads numpy, pillow or vLLM.
    from vlmcli.pipeline import load_jobs, run_jobs
    from vlmcli.render import make_renderer
    from vlmcli.session import model_session

    async with model_session(choice, verbose) as session:
        jobs = load_jobs(inputs, settings, together=together)
        renderer = make_renderer(json_output, len(jobs))
        if all(job.result.error for job in jobs):
            for job in jobs:  # nothing to describe: report without loading a model
                renderer.start(job.result)
                renderer.finish(job.result)
            return len(jobs)
        engine = await session.open(settings)
        results = await run_jobs(engine, jobs, renderer, prompt)
        return sum(1 for result in results if result.error)
