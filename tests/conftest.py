"""Shared test rig: tiny random-weight checkpoints, real media files, and a way to run `vlm`.

Tiny checkpoints are built once per machine (cached under ~/.cache/vlm-tests, keyed by the
builder's source) and found by the tiny profiles through $VLM_TINY_MODELS_DIR.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

from media_factory import write_image, write_video  # noqa: E402

QWEN = "tiny-qwen2.5-vl"
NEMOTRON = "tiny-nemotron-nano-vl"

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # Model commands load the model in-process, as before background servers existed, so each test
    # keeps its meaning and speed; tests/test_keepalive.py turns background servers on.
    "VLM_BACKGROUND": "0",
}
os.environ.update(OFFLINE_ENV)


@pytest.fixture(scope="session")
def tiny_models_dir() -> Path:
    """Build (or reuse) the tiny checkpoints and point the tiny profiles at them."""
    from tiny_models import build_all

    digest = hashlib.sha256((TESTS / "tiny_models.py").read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("VLM_TEST_CACHE", Path.home() / ".cache" / "vlm-tests"))
    root = cache / f"tiny-{digest}"
    if not (root / ".complete").exists():
        staging = cache / f"tiny-{digest}.building-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        build_all(staging)
        (staging / ".complete").touch()
        shutil.rmtree(root, ignore_errors=True)
        staging.rename(root)
    os.environ["VLM_TINY_MODELS_DIR"] = str(root)
    return root


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real media files written by the tests (below /tmp, the tiny profiles' media root)."""
    folder = tmp_path_factory.mktemp("media")
    files = {
        "image": write_image(folder / "photo.png", seed=1),
        "image2": write_image(folder / "other.jpg", width=160, height=160, seed=2),
        "video": write_video(folder / "clip.mp4", num_frames=48, fps=24, seed=3),
        "ntsc": write_video(folder / "ntsc.mp4", num_frames=240, fps=Fraction(24000, 1001), seed=4),
    }
    files["corrupt"] = folder / "broken.jpg"
    files["corrupt"].write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    files["corrupt_video"] = folder / "broken.mp4"
    files["corrupt_video"].write_bytes(b"\x00\x00\x00\x18ftypmp42 not a real movie" * 20)
    files["text"] = folder / "notes.txt"
    files["text"].write_text("plain text, not media\n")
    return files


def vlm_command() -> list[str]:
    """The installed `vlm` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "vlm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "vlmcli"]


@pytest.fixture(scope="session")
def vlm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for running `vlm`: offline, isolated user config."""
    env = {**os.environ, **OFFLINE_ENV, "VLM_CONFIG_DIR": str(tmp_path_factory.mktemp("config"))}
    env.pop("VLM_PROFILE", None)
    return env


@pytest.fixture(scope="session")
def run_vlm(vlm_env: dict[str, str]):
    """Run the real `vlm` command; returns the CompletedProcess (text mode)."""

    def run(*args: str, timeout: float = 900, input: str | None = None, env: dict[str, str] | None = None):
        # env values of None remove a variable
        merged = {**vlm_env, **os.environ, **OFFLINE_ENV, "VLM_CONFIG_DIR": vlm_env["VLM_CONFIG_DIR"], **(env or {})}
        merged = {key: value for key, value in merged.items() if value is not None}
        return subprocess.run(
            [*vlm_command(), *args], capture_output=True, text=True, timeout=timeout, input=input, env=merged, cwd=REPO
        )

    return run
