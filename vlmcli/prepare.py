"""Prepare requests side by side: vLLM's own input rendering, in a pool of worker processes.

vLLM renders each request in its front-end process, one request after another: it tokenizes the
prompt, tiles and normalizes images, turns video frames into pixel values and expands the media
placeholders (about 0.2 s for a 12-tile image on an H100 host). A batch of requests reaches the GPU
only as fast as that one process renders them. Here several spawned processes, each holding the
renderer vLLM builds from the engine's own `VllmConfig`, render requests in parallel, and the engine
gets the rendered input (the form vLLM's `generate` takes without processing it again). Same code,
same configuration: the model sees exactly the tokens and pixels it would otherwise see.

Workers start while the model loads and warm up (torch compiles vLLM's resize kernels on first use),
so the first request does not pay for them.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from vlmcli.errors import VlmError
from vlmcli.families import Family

# Set in each worker by `_start_worker`: vLLM's InputProcessor for the engine's configuration.
_processor: Any = None
WORKER_CACHE_GIB = 0.25


def default_worker_count(cpu_count: int | None = None) -> int:
    """Workers when the profile says `auto`: one per two spare cores, at most 8.

    Two cores stay with the engine's own front-end and the event loop; each worker renders with two
    torch threads (vLLM's resize kernels are multi-threaded).
    """
    cpus = cpu_count or os.cpu_count() or 1
    return max(0, min(8, (cpus - 2) // 2))


class Preparer:
    """A pool of worker processes that render requests for one engine configuration."""

    def __init__(self, vllm_config: Any, workers: int, family: Family):
        if workers < 1:
            raise ValueError("a Preparer needs at least one worker")
        self.workers = workers
        threads = max(1, (os.cpu_count() or 1) // (workers + 1))
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            # spawn: the parent holds vLLM's threads and sockets, which a fork would copy half-alive
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(vllm_config, family, threads),
        )
        # The pool starts processes on demand; one task each starts them all now, beside model loading.
        self._started = [self._pool.submit(os.getpid) for _ in range(workers)]
        self._limit: asyncio.Semaphore | None = None
        self._active = workers
        self.rendered = 0  # requests the workers rendered

    def use(self, workers: int) -> None:
        """Render with at most `workers` processes at a time from now on; 0 leaves rendering to the
        engine's own front-end (benchmarks compare the two on one engine)."""
        self._active = max(0, min(workers, self.workers))
        self._limit = None

    @property
    def active(self) -> int:
        return self._active

    async def ready(self) -> None:
        """Wait until every worker has started and warmed up."""
        await asyncio.gather(*(asyncio.wrap_future(future) for future in self._started))

    async def render(self, prompt: dict[str, Any]) -> dict[str, Any]:
        """vLLM's rendered input for one prompt dict (text, multi_modal_data, mm_processor_kwargs)."""
        if self._limit is None:
            self._limit = asyncio.Semaphore(self._active)
        async with self._limit:
            try:
                rendered = await asyncio.get_running_loop().run_in_executor(self._pool, _render, prompt)
            except BrokenProcessPool:
                raise VlmError(
                    "a preprocessing worker died (see the engine log); run with --workers 0 to render in one process"
                ) from None
        self.rendered += 1
        return rendered

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _start_worker(vllm_config: Any, family: Family, threads: int) -> None:
    """Build vLLM's input processor from the engine's configuration, then render one warm-up input."""
    global _processor
    import torch
    from vllm.v1.engine.input_processor import InputProcessor

    torch.set_num_threads(threads)
    mm_config = vllm_config.model_config.multimodal_config
    if mm_config is not None and mm_config.mm_processor_cache_gb > 0:
        # Each worker keeps a small cache of its own (the engine's size, per worker, would multiply
        # host memory by the worker count).
        mm_config.mm_processor_cache_gb = min(mm_config.mm_processor_cache_gb, WORKER_CACHE_GIB)
    _processor = InputProcessor(vllm_config)
    for kind, prompt in _warm_up_prompts(family):
        try:
            _render(prompt)
        except Exception as exc:  # a warm-up only; a real request that fails reports its own error
            print(f"vlm: preprocessing worker {kind} warm-up failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def _render(prompt: dict[str, Any]) -> dict[str, Any]:
    """What vLLM's own front-end makes of a raw prompt dict (`Renderer.render_cmpl`).

    `skip_mm_cache`: the worker's results carry all their data. vLLM's front-end otherwise leaves
    out media it has sent before, counting on the engine's copy; a worker cannot know what the
    engine holds. vLLM's own separate render server renders the same way.
    """
    from vllm.renderers.inputs.preprocess import parse_model_prompt

    renderer = _processor.renderer
    parsed = parse_model_prompt(_processor.model_config, prompt)
    (rendered,) = renderer.render_cmpl([parsed], renderer.default_cmpl_tok_params, skip_mm_cache=True)
    return rendered


def _warm_up_prompts(family: Family) -> list[tuple[str, dict[str, Any]]]:
    """One image request and, for families that take video, one 8-frame video request."""
    import numpy as np
    from PIL import Image

    from vlmcli.media import ImageInput, VideoClip
    from vlmcli.request import Turn, engine_prompt, render_prompt

    tokenizer = _processor.get_tokenizer()
    pixels = np.random.default_rng(0).integers(0, 255, (8, 360, 640, 3), dtype=np.uint8)
    media: list[tuple[str, Any]] = [("image", ImageInput("warm-up", Image.fromarray(pixels[0]).resize((1024, 768))))]
    if family.video_placeholder is not None:
        media.append(("video", VideoClip("warm-up", pixels, 30.0, list(range(0, 64, 8)), 64)))
    prompts = []
    for kind, item in media:
        text = render_prompt(tokenizer, family, None, [Turn("user", f"Describe this {kind}.", [item])])
        prompts.append((kind, engine_prompt(text, [item], family)))
    return prompts
