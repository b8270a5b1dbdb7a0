"""The pipeline on a real in-process engine: streaming, batching, and true video timestamps."""

from __future__ import annotations

import asyncio
import re

import pytest

from conftest import NEMOTRON

from vlmcli.engine import Engine
from vlmcli.pipeline import load_jobs, run_jobs
from vlmcli.profiles import load_profile
from vlmcli.settings import Overrides, resolve_settings

pytestmark = pytest.mark.engine


class Recorder:
    """A renderer that remembers every call, and how many requests the engine held at each delta."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.events: list[tuple[str, str, str]] = []
        self.in_flight: list[int] = []

    def start(self, result):
        self.events.append(("start", result.input, ""))

    def delta(self, result, text):
        self.events.append(("delta", result.input, text))
        self.in_flight.append(self.engine.llm.get_num_unfinished_requests())

    def finish(self, result):
        self.events.append(("finish", result.input, result.error or ""))


@pytest.fixture(scope="module")
def nemotron_engine(tiny_models_dir):
    settings = resolve_settings(load_profile(NEMOTRON), Overrides(num_frames=8, max_tokens=12))
    loop = asyncio.new_event_loop()
    engine = loop.run_until_complete(Engine.start(settings))
    yield engine, loop
    engine.shutdown()
    loop.run_until_complete(asyncio.sleep(0.1))  # let vLLM's output handler see the shutdown
    loop.close()


def test_streams_in_input_order_and_batches(nemotron_engine, media):
    engine, loop = nemotron_engine
    inputs = [str(media["image"]), str(media["video"]), str(media["image"].parent / "missing.png"), str(media["image2"])]
    jobs = load_jobs(inputs, engine.settings)
    recorder = Recorder(engine)
    results = loop.run_until_complete(run_jobs(engine, jobs, recorder, ignore_eos=True))

    assert [r.input for r in results] == inputs
    assert [r.error is None for r in results] == [True, True, False, True]
    # events come input by input: start, deltas, finish; never interleaved
    order = [inp for kind, inp, _ in recorder.events if kind == "start"]
    assert order == inputs
    for result in results:
        if result.error:
            continue
        deltas = [text for kind, inp, text in recorder.events if kind == "delta" and inp == result.input]
        assert len(deltas) >= 2, "the answer arrived in one piece, not streamed"
        assert "".join(deltas) == result.text
        assert result.output_tokens == 12  # ignore_eos: exactly max_tokens
    # requests were in the engine together (not one after another) while answers streamed
    assert max(recorder.in_flight) >= 2


def test_ntsc_video_timestamps_are_true(nemotron_engine, media):
    engine, loop = nemotron_engine
    jobs = load_jobs([str(media["ntsc"])], engine.settings)
    clip = jobs[0].media[0]
    assert clip.frame_indices[-1] == 239
    [result] = loop.run_until_complete(run_jobs(engine, jobs, Recorder(engine)))
    prompt = engine.tokenizer.decode(result.prompt_token_ids)
    seen = [float(x) for x in re.findall(r"Frame \d+ sampled at ([\d.]+) seconds", prompt)]
    expected = [round(index * 1001 / 24000, 2) for index in clip.frame_indices]
    assert seen == pytest.approx(expected, abs=0.011)
    # vLLM's own arithmetic on the source fps would say 9.80 s for the last frame, not 9.97 s
    assert seen[-1] == pytest.approx(9.97, abs=0.011)


def test_several_images_in_one_prompt(nemotron_engine, media):
    engine, loop = nemotron_engine
    single = load_jobs([str(media["image"])], engine.settings)
    together = load_jobs([str(media["image"]), str(media["image2"])], engine.settings, together=True)
    assert len(together) == 1 and [item.kind for item in together[0].media] == ["image", "image"]
    [one] = loop.run_until_complete(run_jobs(engine, single, Recorder(engine)))
    [both] = loop.run_until_complete(run_jobs(engine, together, Recorder(engine)))
    assert both.error is None and both.kind == "together"
    assert both.prompt_tokens > one.prompt_tokens  # the second image's tokens are in the same prompt


def test_together_respects_the_profiles_media_limits(nemotron_engine, media):
    from vlmcli.errors import UsageError

    engine, _ = nemotron_engine
    with pytest.raises(UsageError, match="5 images in one prompt, but profile tiny-nemotron-nano-vl allows 4"):
        load_jobs([str(media["image"])] * 5, engine.settings, together=True)


def test_a_long_list_streams_through_a_bounded_window(nemotron_engine, media):
    """Inputs past `preload` are read only when a place in the window frees up; at most `window`
    requests are ever in the engine; answers still come in input order, bad inputs in their place."""
    engine, loop = nemotron_engine
    missing = str(media["image"].parent / "missing.png")
    inputs = [str(media["image"]), str(media["image2"]), missing, str(media["corrupt"]), str(media["video"]),
              str(media["image"]), str(media["image2"])]
    jobs = load_jobs(inputs, engine.settings, preload=2)
    assert [job.loaded for job in jobs] == [True, True, False, False, False, False, False]
    assert all(job.result.kind is None for job in jobs[2:]), "nothing past the preload was read"
    recorder = Recorder(engine)
    results = loop.run_until_complete(run_jobs(engine, jobs, recorder, window=2, ignore_eos=True))

    assert [r.input for r in results] == inputs
    assert [r.error is None for r in results] == [True, True, False, False, True, True, True]
    assert "missing.png" in results[2].error and results[4].kind == "video"
    assert [inp for kind, inp, _ in recorder.events if kind == "start"] == inputs
    assert all(r.output_tokens == 12 for r in results if r.error is None)
    assert max(recorder.in_flight) == 2, "two requests in the engine together, never more"
    assert all(job.media == [] for job in jobs), "pixels are dropped once an answer is complete"
