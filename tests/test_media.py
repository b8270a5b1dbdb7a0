"""Media loading: every way of naming an image or video, frame sampling, and each kind of bad input."""

from __future__ import annotations

import base64
import http.server
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from vlmcli.errors import MediaError
from vlmcli.media import ImageInput, VideoClip, load_media, sample_frame_indices
from vlmcli.settings import VideoSampling

FPS2 = VideoSampling(fps=2.0, num_frames=None, max_frames=128)


@pytest.fixture(scope="module")
def http_root(media):
    """A loopback HTTP server over the media folder."""
    folder = media["image"].parent
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_image_from_path_file_url_data_uri_and_http(media, http_root):
    root = media["image"].parent
    expected = np.asarray(load_media(str(media["image"]), FPS2, root).image)
    data_uri = "data:image/png;base64," + base64.b64encode(media["image"].read_bytes()).decode()
    for reference in (media["image"].as_uri(), data_uri, f"{http_root}/photo.png"):
        item = load_media(reference, FPS2, root)
        assert isinstance(item, ImageInput)
        assert np.array_equal(np.asarray(item.image), expected), reference


def test_video_from_path_and_http(media, http_root):
    root = media["video"].parent
    for reference in (str(media["video"]), f"{http_root}/clip.mp4"):
        clip = load_media(reference, FPS2, root)
        assert isinstance(clip, VideoClip)
        # 48 frames at 24 fps = 2 s; 2 fps -> 4 frames spread over the whole clip
        assert clip.frame_indices == [0, 16, 31, 47]
        assert clip.frames.shape == (4, 96, 128, 3)
        assert clip.source_fps == pytest.approx(24.0)


def test_ntsc_clip_keeps_source_fps_and_true_timestamps(media):
    clip = load_media(str(media["ntsc"]), VideoSampling(fps=None, num_frames=5, max_frames=64), media["ntsc"].parent)
    assert clip.source_fps == pytest.approx(24000 / 1001)
    assert clip.frame_indices == [0, 60, 120, 179, 239]
    assert clip.timestamps_s[-1] == pytest.approx(239 * 1001 / 24000)


@pytest.mark.parametrize(
    ("total", "fps", "sampling", "expected"),
    [
        (48, 24.0, VideoSampling(2.0, None, 128), [0, 16, 31, 47]),
        (48, 24.0, VideoSampling(2.0, 8, 128), [0, 7, 13, 20, 27, 34, 40, 47]),
        (3000, 30.0, VideoSampling(2.0, None, 16), list(np.linspace(0, 2999, 16).round().astype(int))),
        (5, 30.0, VideoSampling(None, 32, 64), [0, 1, 2, 3, 4]),
        (1, 30.0, VideoSampling(2.0, None, 64), [0]),
    ],
)
def test_frame_sampling(total, fps, sampling, expected):
    assert sample_frame_indices(total, fps, sampling) == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing", "no such file"),
        ("corrupt", "not a readable image"),
        ("corrupt_video", "not a readable video"),
        ("text", "unsupported format"),
        ("folder", "is a folder"),
    ],
)
def test_bad_local_files(media, name, message):
    reference = str(media["image"].parent if name == "folder" else media.get(name, media["image"].parent / "gone.png"))
    with pytest.raises(MediaError) as caught:
        load_media(reference, FPS2, media["image"].parent)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_outside_media_root(media, tmp_path: Path):
    with pytest.raises(MediaError, match="outside the allowed media root"):
        load_media(str(media["image"]), FPS2, tmp_path)
    with pytest.raises(MediaError, match="outside the allowed media root"):
        load_media(str(tmp_path / ".." / media["image"].parent.name / "photo.png"), FPS2, tmp_path)


def test_bad_urls(media, http_root):
    root = media["image"].parent
    with pytest.raises(MediaError, match="HTTP 404"):
        load_media(f"{http_root}/nothing.png", FPS2, root)
    with pytest.raises(MediaError, match="download failed"):
        load_media("http://127.0.0.1:9/x.png", FPS2, root)
    with pytest.raises(MediaError, match="unsupported URL scheme 'ftp'"):
        load_media("ftp://example.invalid/x.png", FPS2, root)
    with pytest.raises(MediaError, match="not a readable image"):
        load_media("data:image/png;base64,AAAA", FPS2, root)
