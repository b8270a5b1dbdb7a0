"""Benchmark inputs: synthetic images and videos written as real files, or the user's own files.

Synthetic media are written to disk (PNG / MP4) so that a benchmark pays the same decode cost a
user's files would; contents are seeded so runs repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlmcli.errors import UsageError
from vlmcli.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES


@dataclass(frozen=True)
class Workload:
    """What each request shows the model: `media_per_request` files, cycled over `files`."""

    kind: str  # "image", "video" or "files"
    files: list[str]
    media_per_request: int = 1
    description: str = ""

    def request_media(self, index: int) -> list[str]:
        start = index * self.media_per_request
        return [self.files[(start + k) % len(self.files)] for k in range(self.media_per_request)]


def parse_size(text: str, flag: str = "size") -> tuple[int, int]:
    """'1024x768' -> (1024, 768); errors name `flag`."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"{flag}: must look like WIDTHxHEIGHT, e.g. 1024x768 (got {text!r})") from None
    if not (16 <= width <= 16384 and 16 <= height <= 16384):
        raise UsageError(f"{flag}: must be 16..16384 pixels per side (got {text})")
    return width, height


def _frame(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Smooth gradients plus a few blocks: compresses like a photo, differs per seed."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], axis=-1)
    frame = (base + rng.integers(0, 256, 3)).astype(np.uint8)
    for _ in range(4):
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        frame[top : top + height // 4, left : left + width // 4] = rng.integers(0, 256, 3)
    return frame


def synthetic_images(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> list[str]:
    """Write `count` distinct JPEG images of `size` (distinct, so no cache can serve repeats)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"image-{size[0]}x{size[1]}-{seed}-{index}.jpg"
        if not path.exists():
            Image.fromarray(_frame(rng, *size)).save(path, quality=90)
        else:
            rng.integers(0, 256, 3 + 4 * 5)  # keep the sequence identical whether or not files exist
        paths.append(str(path))
    return paths


def synthetic_videos(
    folder: Path, count: int, frames: int, size: tuple[int, int], fps: float, seed: int = 0
) -> list[str]:
    """Write `count` MP4 videos (OpenCV, which vLLM already depends on) whose content moves."""
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"video-{size[0]}x{size[1]}-{frames}f-{fps:g}fps-{seed}-{index}.mp4"
        base = _frame(rng, *size)
        if not path.exists():
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            if not writer.isOpened():
                raise UsageError(f"cannot write a synthetic video to {path}")
            for step in range(frames):
                writer.write(np.roll(base, shift=step * 4, axis=1)[:, :, ::-1])
            writer.release()
        paths.append(str(path))
    return paths


def collect_inputs(references: list[str]) -> list[str]:
    """Files as given; folders expanded to their image and video files (sorted); URLs as they are."""
    files: list[str] = []
    for reference in references:
        path = Path(reference).expanduser()
        if "://" in reference or reference.startswith("data:") or not path.is_dir():
            files.append(reference)
            continue
        found = sorted(
            str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
        )
        if not found:
            raise UsageError(f"{reference}: no image or video files in this folder")
        files.extend(found)
    return files
