"""Parallel request rendering (vlmcli/prepare.py) on the real engine: the model must see exactly the
same input whether vLLM's front-end renders a request or vlm's worker processes do.
"""

from __future__ import annotations

import asyncio

import pytest

from conftest import NEMOTRON, QWEN

from vlmcli.engine import Engine
from vlmcli.media import load_media
from vlmcli.profiles import load_profile
from vlmcli.request import Turn
from vlmcli.settings import Overrides, resolve_settings

pytestmark = pytest.mark.engine

# The token each image or video placeholder expands into, per family.
MEDIA_TOKENS = {
    QWEN: {"image": "<|image_pad|>", "video": "<|video_pad|>"},
    NEMOTRON: {"image": "<image>", "video": "<image>"},
}


def test_auto_worker_count_leaves_the_engine_cores_alone():
    from vlmcli.prepare import default_worker_count

    assert default_worker_count(2) == 0
    assert default_worker_count(4) == 1
    assert default_worker_count(16) == 7
    assert default_worker_count(128) == 8


def test_workers_resolve_from_flag_profile_and_backend(tiny_models_dir):
    loaded = load_profile(QWEN)
    assert resolve_settings(loaded, on_cpu=True).preprocess_workers == 0
    on_gpu = resolve_settings(loaded, on_cpu=False)
    assert on_gpu.preprocess_workers >= 0 and on_gpu.sources["preprocess_workers"].startswith("vlm: auto")
    flagged = resolve_settings(loaded, Overrides(workers=3), on_cpu=True)
    assert flagged.preprocess_workers == 3 and flagged.sources["preprocess_workers"] == "flag --workers"


async def _answer(engine: Engine, turn: Turn) -> tuple[list[int], str]:
    text = ""
    async for delta in engine.chat([turn], max_tokens=8, ignore_eos=True):
        text += delta.text
        if delta.finished:
            return delta.prompt_token_ids, text
    raise AssertionError("no finished delta")


@pytest.mark.parametrize("profile", [QWEN, NEMOTRON])
def test_workers_render_exactly_what_the_engine_renders(profile, tiny_models_dir, media):
    settings = resolve_settings(load_profile(profile), Overrides(workers=2, num_frames=8, max_tokens=8))
    loop = asyncio.new_event_loop()
    engine = loop.run_until_complete(Engine.start(settings))
    try:
        assert engine.preparer is not None and engine.preparer.workers == 2
        tokenizer = engine.tokenizer
        image_token = tokenizer.convert_tokens_to_ids(MEDIA_TOKENS[profile]["image"])
        video_token = tokenizer.convert_tokens_to_ids(MEDIA_TOKENS[profile]["video"])
        turns = {
            "image": Turn("user", "Describe this image.", [load_media(str(media["image"]), settings.video, settings.media_root)]),
            "two images": Turn("user", "Compare.", [
                load_media(str(media["image"]), settings.video, settings.media_root),
                load_media(str(media["image2"]), settings.video, settings.media_root),
            ]),
            "video": Turn("user", "Describe this video.", [load_media(str(media["ntsc"]), settings.video, settings.media_root)]),
        }
        for name, turn in turns.items():
            engine.preparer.use(2)
            rendered = engine.preparer.rendered
            by_workers = loop.run_until_complete(_answer(engine, turn))
            assert engine.preparer.rendered == rendered + 1, f"{name}: a worker rendered it"
            engine.preparer.use(0)  # the engine's own front-end renders this one
            by_engine = loop.run_until_complete(_answer(engine, turn))
            assert engine.preparer.rendered == rendered + 1
            ids_workers, ids_engine = by_workers[0], by_engine[0]
            token = video_token if name == "video" else image_token
            assert ids_workers.count(token) == ids_engine.count(token) > 0, name
            assert len(ids_workers) == len(ids_engine), name
            assert ids_workers == ids_engine, name
            assert by_workers[1] == by_engine[1], f"{name}: same input, same greedy answer"
    finally:
        engine.shutdown()
        loop.run_until_complete(asyncio.sleep(0.1))
        loop.close()


def test_describe_with_workers_matches_describe_without(run_vlm, tiny_models_dir, media):
    """`vlm describe --workers N` end to end: same prompt tokens and greedy answers as without."""
    import json

    inputs = [str(media["image"]), str(media["video"]), str(media["image2"])]
    answers = {}
    for workers in ("2", "0"):
        result = run_vlm("describe", *inputs, "--profile", QWEN, "--workers", workers, "--max-tokens", "8",
                         "--num-frames", "4", "--json")
        assert result.returncode == 0, result.stderr
        answers[workers] = [(row["prompt_tokens"], row["text"]) for row in map(json.loads, result.stdout.splitlines())]
    assert len(answers["2"]) == 3 and all(tokens > 0 for tokens, _ in answers["2"])
    assert answers["2"] == answers["0"]
