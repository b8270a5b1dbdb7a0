"""RemoteEngine's request building, without a server (the real server is in test_serve.py)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from conftest import NEMOTRON, QWEN

from vlmcli.client import RemoteEngine, build_request, server_root, video_data_uri
from vlmcli.errors import RequestError, VlmError
from vlmcli.media import ImageInput, VideoClip
from vlmcli.profiles import load_profile
from vlmcli.request import Turn
from vlmcli.settings import resolve_settings


def settings_for(name: str, tmp_path, monkeypatch):
    monkeypatch.setenv("VLM_TINY_MODELS_DIR", str(tmp_path))
    return resolve_settings(load_profile(name))


def clip(num: int = 3) -> VideoClip:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (num, 8, 10, 3), dtype=np.uint8)
    return VideoClip("v.mp4", frames, 24000 / 1001, [0, 120, 239][:num], 240)


@pytest.mark.parametrize("typed, root", [
    ("127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("http://host:8000/v1/", "http://host:8000"),
    ("https://x.example/proxy/v1", "https://x.example/proxy"),
])
def test_server_root(typed, root):
    assert server_root(typed) == root


def test_server_root_refuses_other_schemes():
    with pytest.raises(VlmError, match="not an http"):
        server_root("ftp://host/")


def test_video_frames_travel_losslessly():
    video = clip()
    header, payload = video_data_uri(video).split(",", 1)
    assert header == "data:video/jpeg;base64"
    frames = [np.asarray(Image.open(io.BytesIO(base64.b64decode(part)))) for part in payload.split(",")]
    assert len(frames) == 3
    assert all((got == sent).all() for got, sent in zip(frames, video.frames))


def test_nemotron_video_keeps_true_timestamps(tmp_path, monkeypatch):
    settings = settings_for(NEMOTRON, tmp_path, monkeypatch)
    messages, params, extra = build_request(settings, [Turn("user", "What happens?", [clip()])], "/no_think", {"max_tokens": 5, "ignore_eos": True})
    assert messages[0] == {"role": "system", "content": "/no_think"}
    assert [part["type"] for part in messages[1]["content"]] == ["video_url", "text"]
    assert params == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 5}
    assert extra["ignore_eos"] is True and extra["return_token_ids"] is True
    video = extra["media_io_kwargs"]["video"]
    # millisecond time base: frame 239 of a 23.976 fps video is at 9968 ms
    assert video["fps"] == 1000.0 and video["frames_indices"] == [0, 5005, 9968]
    assert video["num_frames"] == -1 and video["do_sample_frames"] is False
    assert "mm_processor_kwargs" not in extra


def test_qwen_video_sends_sampled_fps(tmp_path, monkeypatch):
    settings = settings_for(QWEN, tmp_path, monkeypatch)
    _, _, extra = build_request(settings, [Turn("user", "x", [clip()])], None, {})
    assert extra["mm_processor_kwargs"]["fps"] == pytest.approx(3 / (240 * 1001 / 24000))
    assert extra["media_io_kwargs"]["video"]["frames_indices"] == [0, 120, 239]


def test_image_and_text_turns(tmp_path, monkeypatch):
    settings = settings_for(QWEN, tmp_path, monkeypatch)
    image = ImageInput("a.png", Image.new("RGB", (4, 4), (1, 2, 3)))
    turns = [Turn("user", "first", [image]), Turn("assistant", "ok"), Turn("user", "again")]
    messages, _, extra = build_request(settings, turns, None, {})
    assert messages[0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert messages[1:] == [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "again"}]
    assert "media_io_kwargs" not in extra


def test_two_videos_in_one_request_are_refused(tmp_path, monkeypatch):
    settings = settings_for(QWEN, tmp_path, monkeypatch)
    with pytest.raises(RequestError, match="one video per request"):
        build_request(settings, [Turn("user", "x", [clip(), clip()])], None, {})


def test_constructor_contacts_nothing(tmp_path, monkeypatch):
    settings = settings_for(QWEN, tmp_path, monkeypatch)
    engine = RemoteEngine(settings, "127.0.0.1:9/v1", api_key="k")
    assert (engine.url, engine.model, engine.tokenizer) == ("http://127.0.0.1:9", QWEN, None)
    engine.shutdown()
