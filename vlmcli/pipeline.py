"""Describe many inputs at once: load media in parallel, keep many requests in the engine together
(so vLLM batches them), and hand the streamed answers to a renderer in input order.

Memory stays bounded: at most IN_FLIGHT inputs hold their pixels at a time, so a folder of 10,000
images streams through instead of being loaded up front.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from vlmcli.engine import Engine
from vlmcli.errors import MediaError, RequestError, UsageError
from vlmcli.media import MediaItem, label, load_media
from vlmcli.request import Turn
from vlmcli.settings import RunSettings

MEDIA_WORKERS = 4
# Requests loaded and in the engine at once: enough to fill a GPU batch, few enough to bound memory.
IN_FLIGHT = 64


@dataclass
class Result:
    """What happened to one input: the answer or the error, token counts and timings."""

    input: str
    kind: str | None = None
    text: str = ""
    error: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    media_s: float = 0.0
    ttft_s: float | None = None
    total_s: float = 0.0
    frames: int | None = None
    prompt_token_ids: list[int] | None = field(default=None, repr=False)

    @property
    def tokens_per_s(self) -> float | None:
        if self.ttft_s is None or self.output_tokens < 2 or self.total_s <= self.ttft_s:
            return None
        return (self.output_tokens - 1) / (self.total_s - self.ttft_s)

    def to_json(self) -> dict[str, Any]:
        return {
            "input": label(self.input),
            "kind": self.kind,
            "text": self.text,
            "error": self.error,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "finish_reason": self.finish_reason,
            "frames": self.frames,
            "timings": {
                "media_s": round(self.media_s, 4),
                "ttft_s": None if self.ttft_s is None else round(self.ttft_s, 4),
                "total_s": round(self.total_s, 4),
                "output_tokens_per_s": None if self.tokens_per_s is None else round(self.tokens_per_s, 2),
            },
        }


class Renderer(Protocol):
    def start(self, result: Result) -> None: ...
    def delta(self, result: Result, text: str) -> None: ...
    def finish(self, result: Result) -> None: ...


@dataclass
class Job:
    """One request to make: its result record and the media it shows the model.

    `loaded` is False for an input whose media are read only when its turn in the window comes.
    """

    result: Result
    media: list[MediaItem]
    loaded: bool = True


def load_input(result: Result, settings: RunSettings) -> MediaItem | None:
    """Read one input's media; a failure is recorded on the result."""
    started = time.perf_counter()
    try:
        item = load_media(result.input, settings.video, settings.media_root)
    except MediaError as exc:
        result.error = str(exc)
        return None
    finally:
        result.media_s = time.perf_counter() - started
    result.kind = item.kind
    result.frames = len(item.frame_indices) if item.kind == "video" else None
    return item


def load_jobs(
    references: list[str], settings: RunSettings, *, together: bool = False, preload: int = IN_FLIGHT
) -> list[Job]:
    """One job per input, in input order; the first `preload` are read now, in parallel (so that
    when every input is bad, no model is loaded), the rest when `run_jobs` gets to them."""
    results = [Result(input=ref) for ref in references]
    now = results if together else results[:preload]
    with ThreadPoolExecutor(max_workers=MEDIA_WORKERS) as pool:
        items = list(pool.map(lambda result: load_input(result, settings), now))

    if not together:
        jobs = [Job(result, [item] if item is not None else []) for result, item in zip(results, items)]
        return jobs + [Job(result, [], loaded=False) for result in results[len(now):]]
    loaded = [item for item in items if item is not None]
    check_media_limits(loaded, settings)
    combined = Result(input=" + ".join(label(ref) for ref in references), kind="together")
    combined.media_s = sum(result.media_s for result in results)
    failed = [Job(result, []) for result in results if result.error]
    return failed + ([Job(combined, loaded)] if loaded else [])


def check_media_limits(media: list[MediaItem], settings: RunSettings) -> None:
    images = sum(1 for item in media if item.kind == "image")
    videos = len(media) - images
    if images > settings.max_images:
        raise UsageError(
            f"{images} images in one prompt, but profile {settings.profile_name} allows {settings.max_images} "
            "(media.max_images)"
        )
    if videos > settings.max_videos:
        raise UsageError(
            f"{videos} videos in one prompt, but profile {settings.profile_name} allows {settings.max_videos} "
            "(media.max_videos)"
        )


def prompt_for(job: Job, settings: RunSettings, prompt: str | None) -> str:
    if prompt:
        return prompt
    kinds = {item.kind for item in job.media}
    return settings.prompts["video" if "video" in kinds else "image"]


LOADED = object()  # first item of a job's queue: its media are read (or failed to be)


async def run_jobs(
    engine: Engine, jobs: list[Job], renderer: Renderer, prompt: str | None = None, *,
    window: int = IN_FLIGHT, **sampling: Any
) -> list[Result]:
    """Keep up to `window` jobs loaded and in the engine; render answers one after another in input
    order. A job gives its place to the next one when its answer is complete."""
    settings = engine.settings
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in jobs]
    places = asyncio.Semaphore(window)

    async def produce(job: Job, queue: asyncio.Queue[Any]) -> None:
        async with places:
            try:
                if not job.loaded:
                    item = await asyncio.to_thread(load_input, job.result, settings)
                    job.media, job.loaded = ([item] if item is not None else []), True
                await queue.put(LOADED)
                if job.result.error:
                    return
                turn = Turn("user", prompt_for(job, settings, prompt), job.media)
                async for delta in engine.chat([turn], system_prompt=settings.system_prompt, **sampling):
                    await queue.put(delta)
            except Exception as exc:  # handed to the consumer, which reports or re-raises it in order
                await queue.put(exc)
            finally:
                job.media = []  # the pixels are not needed once the answer is complete

    started = time.perf_counter()
    # Jobs that failed while preloading never take a place.
    tasks = [asyncio.create_task(produce(job, queue)) for job, queue in zip(jobs, queues) if not job.result.error]
    try:
        for job, queue in zip(jobs, queues):
            result = job.result
            if result.error is None:
                first = await queue.get()  # wait until its media are read: the renderer shows the kind
                if isinstance(first, Exception):
                    raise first
            renderer.start(result)
            if result.error is None:
                await _consume(result, queue, started, renderer)
            renderer.finish(result)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return [job.result for job in jobs]


async def _consume(result: Result, queue: asyncio.Queue[Any], started: float, renderer: Renderer) -> None:
    while True:
        item = await queue.get()
        now = time.perf_counter() - started
        if isinstance(item, RequestError):
            result.error = f"{label(result.input)}: {item}"
            result.total_s = now
            return
        if isinstance(item, Exception):
            raise item
        if item.text and result.ttft_s is None:
            result.ttft_s = now
        if item.text:
            result.text += item.text
            renderer.delta(result, item.text)
        if item.finished:
            result.prompt_tokens = item.prompt_tokens
            result.output_tokens = item.output_tokens
            result.finish_reason = item.finish_reason
            result.prompt_token_ids = item.prompt_token_ids
            result.total_s = now
            if result.ttft_s is None:
                result.ttft_s = now
            return
