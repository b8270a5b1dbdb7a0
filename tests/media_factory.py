"""Real media files for tests: images written with pillow, videos encoded with PyAV (ffmpeg)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image


def pattern(width: int, height: int, seed: int) -> np.ndarray:
    """A deterministic RGB picture: gradients plus a seeded block, so different seeds differ."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), np.full_like(x, seed * 37 % 256)], axis=-1)
    top, left = rng.integers(0, max(height // 2, 1)), rng.integers(0, max(width // 2, 1))
    frame[top : top + height // 3, left : left + width // 3] = rng.integers(0, 256, 3)
    return frame.astype(np.uint8)


def write_image(path: Path, width: int = 224, height: int = 168, seed: int = 0) -> Path:
    Image.fromarray(pattern(width, height, seed)).save(path)
    return path


def write_video(
    path: Path, num_frames: int = 24, fps: Fraction | int = 24, width: int = 128, height: int = 96, seed: int = 0
) -> Path:
    """Encode an MPEG-4 video whose frames move, at an exact (possibly fractional) frame rate."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        base = pattern(width, height, seed)
        for index in range(num_frames):
            frame = np.roll(base, shift=index * 3, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
