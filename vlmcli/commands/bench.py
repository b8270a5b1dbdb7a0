"""`vlm bench`: latency and throughput of a profile on a workload, for people and for scripts."""

from __future__ import annotations

import asyncio
import gc
from typing import Annotated, Optional

import typer

from vlmcli.commands.common import InProcessOption, KeepAliveOption, VerboseOption, complete_profile
from vlmcli.errors import UsageError


def _floats(text: str | None, flag: str) -> list[float | None]:
    if text is None:
        return [None]
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"{flag}: a comma-separated list of numbers, e.g. 0,0.5,0.75 (got {text!r})") from None


def _ints(text: str, flag: str, minimum: int = 1) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < minimum:
        raise UsageError(f"{flag}: a comma-separated list of whole numbers >= {minimum}, e.g. {minimum},8,32 (got {text!r})")
    return values


def bench(
    profile: Annotated[Optional[list[str]], typer.Option("--profile", "-P", help="Profile(s) to compare; repeat or comma-separate.", autocompletion=complete_profile)] = None,
    workload: Annotated[str, typer.Option(help="Synthetic workload: image or video (ignored with --input).")] = "image",
    inputs: Annotated[Optional[list[str]], typer.Option("--input", "-i", help="Real files or folders to use instead (repeatable).")] = None,
    images_per_request: Annotated[int, typer.Option(min=1, help="Images in each request.")] = 1,
    image_size: Annotated[str, typer.Option(help="Synthetic image size, WIDTHxHEIGHT.")] = "1024x768",
    video_frames: Annotated[int, typer.Option(min=1, help="Frames in each synthetic video.")] = 64,
    video_size: Annotated[str, typer.Option(help="Synthetic video size, WIDTHxHEIGHT.")] = "640x360",
    video_fps: Annotated[float, typer.Option(min=1, help="Frame rate of synthetic videos.")] = 30.0,
    num_prompts: Annotated[int, typer.Option(min=1, help="Requests per run.")] = 16,
    concurrency: Annotated[str, typer.Option(help="Requests in flight at once; a list sweeps, e.g. 1,8,32.")] = "1",
    request_rate: Annotated[Optional[float], typer.Option(min=0.001, help="Poisson arrival rate (requests/s) instead of all at once.")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Output tokens per request (fixed: EOS is ignored).")] = 128,
    warmup: Annotated[int, typer.Option(min=0, help="Warm-up requests before measuring.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed for synthetic media and arrivals.")] = 0,
    pruning_rate: Annotated[Optional[str], typer.Option(help="EVS pruning rate(s) to sweep, e.g. 0,0.75.")] = None,
    tiles: Annotated[Optional[int], typer.Option(help="Most image tiles.")] = None,
    num_frames: Annotated[Optional[int], typer.Option(help="Frames sampled per video.")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Video sampling rate.")] = None,
    max_frames: Annotated[Optional[int], typer.Option(help="Cap on sampled frames.")] = None,
    baseline: Annotated[Optional[str], typer.Option(help="Also run the workload through 'vllm' LLM.generate and report the ratio.")] = None,
    workers: Annotated[Optional[str], typer.Option(help="Preprocessing worker processes; a list compares them on one engine, e.g. 0,8.")] = None,
    prerender: Annotated[bool, typer.Option("--prerender", help="Add a run with every request rendered before the clock starts (the engine's own floor).")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print every figure as JSON.")] = False,
    csv_output: Annotated[bool, typer.Option("--csv", help="Print one CSV row per run.")] = False,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the report to this file: CSV if it ends in .csv (or with --csv, unless it ends in .json), else JSON.")] = None,
    server: Annotated[Optional[str], typer.Option(envvar="VLM_SERVER", help="Benchmark a running `vlm serve` at this URL.")] = None,
    in_process: InProcessOption = False,
    keep_alive: KeepAliveOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Measure time to first token, per-token latency, throughput and media preparation.

    Through a server (background or --server) it also reports the client overhead: the mean time
    to first token seen here minus the server's own.
    """
    from vlmcli.benchrun import BenchPlan, run_plan
    from vlmcli.session import engine_choice

    if baseline not in (None, "vllm"):
        raise UsageError(f"--baseline: the only baseline is 'vllm' (got {baseline!r})")
    if (workers is not None or prerender) and server:
        raise UsageError("--workers/--prerender: preprocessing workers belong to an in-process engine; they cannot be combined with --server")
    if baseline and server:
        raise UsageError("--baseline: runs vLLM in this process; it cannot be combined with --server")
    if workload not in ("image", "video"):
        raise UsageError(f"--workload: image or video (got {workload!r})")
    profiles = [name for item in (profile or [None]) for name in ((item or "").split(",") if item else [None])]
    plan = BenchPlan(
        profiles=profiles, workload=workload, inputs=inputs or [], images_per_request=images_per_request,
        image_size=image_size, video_frames=video_frames, video_size=video_size, video_fps=video_fps,
        num_prompts=num_prompts, concurrency=_ints(concurrency, "--concurrency"), request_rate=request_rate,
        max_tokens=max_tokens, warmup=warmup, seed=seed, pruning_rates=_floats(pruning_rate, "--pruning-rate"),
        tiles=tiles, num_frames=num_frames, fps=fps, max_frames=max_frames, baseline=baseline, server=server,
        workers=_ints(workers, "--workers", minimum=0) if workers is not None else [None], prerender=prerender,
    )
    # the baseline runs vLLM in this process, and workers serve an in-process engine: vlm runs here too
    choice = engine_choice(server, None, in_process or bool(baseline) or workers is not None or prerender, keep_alive)
    report = asyncio.run(run_plan(plan, choice=choice, verbose=verbose, json_output=json_output, csv_output=csv_output, output=output))
    gc.collect()  # let vLLM's AsyncLLM finalize before interpreter exit
    if any(run["failed"] for run in report["runs"]):
        raise typer.Exit(1)
