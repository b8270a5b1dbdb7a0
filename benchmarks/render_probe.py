"""How long vLLM's front-end takes to render one request, and whether vlm's workers render the same.

No engine, no GPU work: builds the engine configuration for a profile, then renders synthetic image
requests (a) in this process with vLLM's InputProcessor, (b) with that configuration after a pickle
round trip (what the workers receive), and (c) through vlm's Preparer pool, and prints token counts
and seconds per request.

    python benchmarks/render_probe.py PROFILE [WORKERS] [REQUESTS]
"""

from __future__ import annotations

import asyncio
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import numpy as np
    from PIL import Image

    from vlmcli.commands.common import run_settings
    from vlmcli.media import ImageInput
    from vlmcli.request import Turn, engine_prompt, render_prompt

    profile = sys.argv[1]
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    settings = run_settings(profile)
    from vllm import AsyncEngineArgs, SamplingParams
    from vllm.v1.engine.input_processor import InputProcessor

    # every probe image is new noise: vLLM's processor cache never spares the rendering
    config = AsyncEngineArgs(**settings.engine_args).create_engine_config()
    processor = InputProcessor(config)
    tokenizer = processor.get_tokenizer()
    rng = np.random.default_rng(0)

    def prompt_for(image: Image.Image) -> dict:
        item = ImageInput("probe", image)
        text = render_prompt(tokenizer, settings.family, None, [Turn("user", "Describe this image.", [item])])
        return engine_prompt(text, [item], settings.family)

    def noise(width: int, height: int) -> Image.Image:
        return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))

    params = SamplingParams(max_tokens=4)
    probes = {"640x480 flat": Image.new("RGB", (640, 480), (128, 96, 64)), "1024x768 noise": noise(1024, 768)}

    def ids(proc: InputProcessor, prompt: dict) -> str:
        try:
            request = proc.process_inputs("probe", prompt, params, supported_tasks=("generate",))
            return f"{len(request.prompt_token_ids)} tokens"
        except Exception as exc:  # report, do not stop: this is a probe
            return f"FAILED {type(exc).__name__}: {str(exc)[:120]}"

    for name, image in probes.items():
        print(f"in-process, {name}: {ids(processor, prompt_for(image))}", flush=True)
    copied = InputProcessor(pickle.loads(pickle.dumps(config)))
    for name, image in probes.items():
        print(f"pickled config, {name}: {ids(copied, prompt_for(image))}", flush=True)

    prompts = [prompt_for(noise(1024, 768)) for _ in range(count)]
    processor.process_inputs("warm", prompts[0], params, supported_tasks=("generate",))
    started = time.perf_counter()
    for index, prompt in enumerate(prompts):
        processor.process_inputs(f"p{index}", prompt, params, supported_tasks=("generate",))
    serial = time.perf_counter() - started
    print(f"in-process: {count} requests in {serial:.2f} s, {serial / count * 1000:.0f} ms each", flush=True)

    from vlmcli.prepare import Preparer

    async def pooled() -> float:
        started = time.perf_counter()
        preparer = Preparer(config, workers, settings.family)
        await preparer.ready()
        print(f"pool of {workers}: up and warm in {time.perf_counter() - started:.1f} s", flush=True)
        try:
            started = time.perf_counter()
            rendered = await asyncio.gather(*(preparer.render(prompt) for prompt in prompts))
            elapsed = time.perf_counter() - started
            print(f"pool: token counts {sorted({len(r['prompt_token_ids']) for r in rendered})}", flush=True)
            return elapsed
        finally:
            preparer.close()

    elapsed = asyncio.run(pooled())
    print(f"pool of {workers}: {count} requests in {elapsed:.2f} s, {elapsed / count * 1000:.0f} ms each, "
          f"{serial / elapsed:.2f}x the single process", flush=True)


if __name__ == "__main__":
    main()
