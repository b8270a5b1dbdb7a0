"""`vlm describe` end to end: the real command, the real vLLM engine on the CPU, tiny checkpoints."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from functools import partial

import pytest

from conftest import NEMOTRON, QWEN

pytestmark = pytest.mark.engine


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def assert_clean_errors(stderr: str, expected: list[str]) -> None:
    """stderr holds exactly one line per expected error, and never a traceback."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("vlm: error:")]
    assert len(lines) == len(expected), stderr
    for line, fragment in zip(lines, expected):
        assert fragment in line, (line, fragment)


@pytest.fixture(scope="module")
def http_url(media):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(media["image"].parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_many_inputs_json_in_order_with_bad_ones(run_vlm, tiny_models_dir, media, http_url):
    data_uri = "data:image/png;base64," + base64.b64encode(media["image"].read_bytes()).decode()
    inputs = [
        str(media["image"]),
        f"{http_url}/other.jpg",
        data_uri,
        str(media["video"]),
        str(media["image"].parent / "missing.png"),
        str(media["corrupt"]),
    ]
    result = run_vlm("describe", *inputs, "--profile", QWEN, "--json", "--max-tokens", "8")
    assert result.returncode == 1, result.stderr
    rows = json_lines(result.stdout)
    assert [row["kind"] for row in rows] == ["image", "image", "image", "video", None, None]
    assert rows[2]["input"].startswith("data:image/png;base64,…")
    for row in rows[:4]:
        assert row["error"] is None
        assert 1 <= row["output_tokens"] <= 8
        assert row["prompt_tokens"] > 10
        assert row["finish_reason"] in ("length", "stop")
        timings = row["timings"]
        assert 0 < timings["ttft_s"] <= timings["total_s"]
        assert timings["media_s"] >= 0
    # the same picture from a path and a data: URI is the same prompt
    assert rows[0]["prompt_tokens"] == rows[2]["prompt_tokens"]
    assert rows[3]["frames"] == 4  # 2 s of video at 2 fps
    assert "no such file" in rows[4]["error"] and "not a readable image" in rows[5]["error"]
    assert_clean_errors(result.stderr, ["missing.png: no such file", "broken.jpg: not a readable image"])


def test_plain_text_when_piped(run_vlm, tiny_models_dir, media):
    result = run_vlm("describe", str(media["image"]), "--profile", QWEN, "--max-tokens", "6", "--prompt", "What is this?")
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout and not result.stdout.lstrip().startswith("{")
    assert result.stdout.endswith("\n") and result.stdout.strip()
    assert "Traceback" not in result.stderr


def test_prompt_longer_than_max_model_len(run_vlm, tiny_models_dir, media):
    result = run_vlm("describe", str(media["image"]), "--profile", QWEN, "--prompt", "describe " * 5000)
    assert result.returncode == 1
    assert_clean_errors(result.stderr, ["longer than max_model_len 4096"])


def test_nemotron_tiles_and_evs(run_vlm, tiny_models_dir, media):
    runs = {}
    for tiles, pruning in (("1", "0"), ("6", "0.75")):
        result = run_vlm(
            "describe", str(media["image"]), str(media["video"]), "--profile", NEMOTRON, "--json",
            "--tiles", tiles, "--pruning-rate", pruning, "--num-frames", "8", "--max-tokens", "4",
        )
        assert result.returncode == 0, result.stderr
        runs[tiles] = json_lines(result.stdout)
    image_1, video_no_evs = runs["1"]
    image_6, video_evs = runs["6"]
    assert image_6["prompt_tokens"] > image_1["prompt_tokens"]  # more tiles, more image tokens
    assert video_evs["prompt_tokens"] < video_no_evs["prompt_tokens"]  # EVS pruned video tokens
    assert video_evs["frames"] == video_no_evs["frames"] == 8


def test_bad_inputs_never_start_a_model(run_vlm, media, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = run_vlm(
        "describe", str(media["image"].parent / "gone.mp4"), str(media["corrupt"]), str(media["corrupt_video"]),
        str(media["text"]), str(media["image"]), "http://127.0.0.1:9/x.png",
        "--profile", QWEN, "--media-root", str(outside), env={"VLM_TINY_MODELS_DIR": "/nonexistent"},
    )
    assert result.returncode == 1
    assert_clean_errors(result.stderr, [
        "gone.mp4: no such file", "outside the allowed media root", "outside the allowed media root",
        "outside the allowed media root", "outside the allowed media root", "download failed",
    ])
    result = run_vlm(
        "describe", str(media["corrupt"]), str(media["corrupt_video"]), str(media["text"]),
        "--profile", QWEN, env={"VLM_TINY_MODELS_DIR": "/nonexistent"},
    )
    assert_clean_errors(result.stderr, ["not a readable image", "not a readable video", "unsupported format"])


def test_bad_profile_and_flags(run_vlm, media, tmp_path):
    profile = tmp_path / "bad.yaml"
    profile.write_text((tiny_profile_text().replace("image_tiles: 6", "image_tiles: 40")).replace(NEMOTRON, "bad"))
    result = run_vlm("describe", str(media["image"]), "--profile", str(profile))
    assert result.returncode == 2
    assert_clean_errors(result.stderr, [f"{profile}: media.image_tiles: Input should be less than or equal to 12 (got 40)"])
    result = run_vlm("describe", str(media["image"]), "--profile", QWEN, "--tiles", "3")
    assert result.returncode == 2
    assert_clean_errors(result.stderr, ["--tiles: Qwen2.5-VL has no image tiles"])
    result = run_vlm("describe", str(media["image"]), "--profile", QWEN, env={"VLM_TINY_MODELS_DIR": None})
    assert result.returncode == 2
    assert_clean_errors(result.stderr, ["model: environment variable VLM_TINY_MODELS_DIR is not set"])


def tiny_profile_text() -> str:
    from vlmcli.profiles import builtin_profiles_dir

    return (builtin_profiles_dir() / f"{NEMOTRON}.yaml").read_text()
