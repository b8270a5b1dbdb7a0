"""Measure what matters for VLM serving: latency per request, throughput, and media preparation.

`run_benchmark` drives any engine with the `.chat()` interface (in-process or a server) at a given
concurrency or request rate; `run_vllm_baseline` runs the same requests the way a hand-written
script would (one `LLM.generate` call) so the tool's own cost is a measured ratio.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vlmcli.errors import MediaError, RequestError
from vlmcli.media import MediaItem, load_media
from vlmcli.request import Turn, engine_prompt, render_prompt
from vlmcli.settings import RunSettings
from vlmcli.workloads import Workload

MEDIA_WORKERS = 8


@dataclass
class RequestRecord:
    index: int
    media_s: float = 0.0
    ttft_s: float | None = None
    e2e_s: float = 0.0
    itl_s: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    text_tokens: int | None = None
    output_tokens: int = 0
    error: str | None = None


def percentiles(values: list[float]) -> dict[str, float | None]:
    """mean, median, p90 and p99 (nearest-rank on the sorted values); None when empty."""
    if not values:
        return {"mean": None, "median": None, "p90": None, "p99": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]

    return {
        "mean": statistics.fmean(ordered),
        "median": statistics.median(ordered),
        "p90": rank(0.90),
        "p99": rank(0.99),
    }


class PeakMemory:
    """Samples peak host memory of this process tree (and GPU memory via nvidia-smi, if present)."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self.host_bytes = 0
        self.gpu_bytes: int | None = None
        self._gpu_busy: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def gpu_busy_percent(self) -> float | None:
        """Mean of nvidia-smi's utilization.gpu over the run: the share of time a kernel was running."""
        return statistics.fmean(self._gpu_busy) if self._gpu_busy else None

    def _run(self) -> None:
        try:
            import psutil  # a vLLM dependency; absent only in stripped-down environments
        except ImportError:
            psutil = None
        me = psutil.Process() if psutil else None
        while True:
            if me is not None:
                try:
                    rss = me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True))
                    self.host_bytes = max(self.host_bytes, rss)
                except psutil.Error:
                    pass
            gpu = _gpu_memory_and_busy()
            if gpu is not None:
                self.gpu_bytes = max(self.gpu_bytes or 0, gpu[0])
                self._gpu_busy.append(gpu[1])
            if self._stop.wait(self.interval_s):
                return


def _gpu_memory_and_busy() -> tuple[int, float] | None:
    """(memory used in bytes, summed over GPUs; utilization in percent, averaged) from nvidia-smi."""
    from vlmcli.gpu import nvidia_smi

    rows = nvidia_smi("--query-gpu=memory.used,utilization.gpu", timeout_s=5)
    if rows is None:
        return None
    try:
        figures = [[float(value) for value in row] for row in rows]
        return int(sum(row[0] for row in figures) * 2**20), statistics.fmean(row[1] for row in figures)
    except (ValueError, IndexError, statistics.StatisticsError):
        return None


def load_request_media(workload: Workload, settings: RunSettings, index: int) -> tuple[list[MediaItem], float]:
    started = time.perf_counter()
    media = [load_media(ref, settings.video, settings.media_root) for ref in workload.request_media(index)]
    return media, time.perf_counter() - started


def text_token_count(engine: Any, settings: RunSettings, prompt: str, media: list[MediaItem]) -> int | None:
    """Prompt tokens that are text: the prompt with each media placeholder but none of its tokens."""
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None:
        return None
    text = render_prompt(tokenizer, settings.family, settings.system_prompt, [Turn("user", prompt, media)])
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) - len(media)


async def run_benchmark(
    engine: Any,
    workload: Workload,
    *,
    num_prompts: int,
    concurrency: int,
    max_tokens: int,
    request_rate: float | None = None,
    seed: int = 0,
    prompt: str | None = None,
    on_done: Any = None,
    prerender: bool = False,
) -> tuple[list[RequestRecord], float]:
    """Run `num_prompts` requests, at most `concurrency` at once; returns records and wall time.

    Media for a request are loaded in a worker thread when its turn comes, so loading overlaps
    generation of earlier requests, as it does in `vlm describe`. With `prerender` (in-process
    engines only) every request is loaded and rendered before the clock starts: what is left is the
    engine's own time, the floor that faster preparation can approach.
    """
    settings = engine.settings
    prompt = prompt or settings.prompts["video" if workload.kind == "video" else "image"]
    sampling = {"max_tokens": max_tokens, "ignore_eos": True, "detokenize": False}
    limit = asyncio.Semaphore(concurrency)
    arrivals = random.Random(seed)
    records = [RequestRecord(index) for index in range(num_prompts)]
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=MEDIA_WORKERS)

    rendered: dict[int, dict[str, Any]] = {}

    async def load(record: RequestRecord) -> list[MediaItem]:
        media, record.media_s = await loop.run_in_executor(pool, load_request_media, workload, settings, record.index)
        record.text_tokens = text_token_count(engine, settings, prompt, media)
        return media

    async def render_ahead(record: RequestRecord) -> None:
        try:
            media = await load(record)
            rendered[record.index] = await engine.prepare([Turn("user", prompt, media)], system_prompt=settings.system_prompt)
        except (MediaError, RequestError) as exc:
            record.error = str(exc)

    def answer(record: RequestRecord, media: list[MediaItem]) -> Any:
        if record.index in rendered:
            return engine.stream(rendered.pop(record.index), engine.sampling_params(**sampling))
        return engine.chat([Turn("user", prompt, media)], system_prompt=settings.system_prompt, **sampling)

    async def one(record: RequestRecord) -> None:
        if record.error:  # refused while rendering ahead
            if on_done:
                on_done(record)
            return
        async with limit:
            started = time.perf_counter()
            try:
                media = [] if record.index in rendered else await load(record)
                sent = last = time.perf_counter()
                async for delta in answer(record, media):
                    now = time.perf_counter()
                    if delta.new_tokens:
                        if record.ttft_s is None:
                            record.ttft_s = now - sent
                        else:
                            record.itl_s.append((now - last) / delta.new_tokens)
                        last = now
                    if delta.finished:
                        record.prompt_tokens = delta.prompt_tokens
                        record.output_tokens = delta.output_tokens
                record.e2e_s = time.perf_counter() - started
            except (MediaError, RequestError) as exc:
                record.error = str(exc)
            if on_done:
                on_done(record)

    async def paced() -> None:
        tasks = []
        for record in records:
            tasks.append(asyncio.create_task(one(record)))
            if request_rate:
                await asyncio.sleep(arrivals.expovariate(request_rate))
        await asyncio.gather(*tasks)

    if prerender:
        await asyncio.gather(*(render_ahead(record) for record in records))
    started = time.perf_counter()
    try:
        await paced()
    finally:
        pool.shutdown(wait=False)
    return records, time.perf_counter() - started


def summarize(records: list[RequestRecord], duration_s: float) -> dict[str, Any]:
    """Every figure of one run, ready for a table row or JSON."""
    done = [r for r in records if r.error is None]
    tpot = [(r.e2e_s - r.media_s - r.ttft_s) / (r.output_tokens - 1) for r in done if r.ttft_s is not None and r.output_tokens > 1]
    output_tokens = sum(r.output_tokens for r in done)
    prompt_tokens = sum(r.prompt_tokens for r in done)
    text_tokens = [r.text_tokens for r in done if r.text_tokens is not None]
    return {
        "requests": len(records),
        "failed": len(records) - len(done),
        "errors": sorted({r.error for r in records if r.error})[:5],
        "duration_s": duration_s,
        "request_throughput": len(done) / duration_s if duration_s else None,
        "output_token_throughput": output_tokens / duration_s if duration_s else None,
        "total_token_throughput": (output_tokens + prompt_tokens) / duration_s if duration_s else None,
        "ttft_s": percentiles([r.ttft_s for r in done if r.ttft_s is not None]),
        "tpot_s": percentiles(tpot),
        "itl_s": percentiles([gap for r in done for gap in r.itl_s]),
        "e2e_s": percentiles([r.e2e_s for r in done]),
        "media_s": percentiles([r.media_s for r in done]),
        "media_total_s": sum(r.media_s for r in records),
        "prompt_tokens_per_request": prompt_tokens / len(done) if done else None,
        "text_tokens_per_request": statistics.fmean(text_tokens) if text_tokens else None,
        "vision_tokens_per_request": (
            prompt_tokens / len(done) - statistics.fmean(text_tokens) if done and text_tokens else None
        ),
        "output_tokens_per_request": output_tokens / len(done) if done else None,
    }


def server_ttft_totals(engine: Any) -> tuple[float, float] | None:
    """(sum, count) of the server's own time-to-first-token histogram
    (`vllm:time_to_first_token_seconds` on /metrics); None in-process or if it cannot be read."""
    import urllib.request

    url = getattr(engine, "url", None)
    if not url:
        return None
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            text = response.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return None
    metric = "vllm:time_to_first_token_seconds"
    totals: dict[str, float] = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in (f"{metric}_sum", f"{metric}_count"):
            totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    if len(totals) != 2:
        return None
    return totals[f"{metric}_sum"], totals[f"{metric}_count"]


def client_overhead(client_ttft_mean_s: float | None, before: tuple[float, float] | None, after: tuple[float, float] | None) -> dict[str, float | None]:
    """The server's mean TTFT over a run (histogram deltas) and what the client adds to it."""
    if before is None or after is None or client_ttft_mean_s is None or after[1] <= before[1]:
        return {"server_ttft_mean_s": None, "client_overhead_s": None}
    server_mean = (after[0] - before[0]) / (after[1] - before[1])
    return {"server_ttft_mean_s": server_mean, "client_overhead_s": client_ttft_mean_s - server_mean}


def run_vllm_baseline(
    settings: RunSettings, workload: Workload, *, num_prompts: int, max_tokens: int, prompt: str | None = None,
    warmup: Workload | None = None,
) -> dict[str, Any]:
    """The same requests as a hand-written vLLM script runs them: load every input, then one
    `LLM.generate` call (after an untimed warm-up request, as vlm gets). Returns start time,
    duration and token counts."""
    from vllm import LLM, SamplingParams

    started = time.perf_counter()
    llm = LLM(**settings.engine_args)
    start_s = time.perf_counter() - started
    tokenizer = llm.get_tokenizer()
    prompt = prompt or settings.prompts["video" if workload.kind == "video" else "image"]
    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, detokenize=False, temperature=0.0)

    def prepare(load_from: Workload, index: int) -> dict[str, Any]:
        media, _ = load_request_media(load_from, settings, index)
        text = render_prompt(tokenizer, settings.family, settings.system_prompt, [Turn("user", prompt, media)])
        return engine_prompt(text, media, settings.family)

    if warmup is not None:
        llm.generate([prepare(warmup, 0)], params, use_tqdm=False)
    began = time.perf_counter()
    prompts = [prepare(workload, index) for index in range(num_prompts)]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    duration = time.perf_counter() - began
    output_tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    prompt_tokens = sum(len(o.prompt_token_ids or []) for o in outputs)
    del llm
    import gc

    gc.collect()
    return {
        "engine_start_s": start_s,
        "duration_s": duration,
        "requests": num_prompts,
        "request_throughput": num_prompts / duration,
        "output_token_throughput": output_tokens / duration,
        "prompt_tokens_per_request": prompt_tokens / num_prompts,
    }
