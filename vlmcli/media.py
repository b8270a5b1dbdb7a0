"""Load images and videos from paths and URLs into plain data (PIL images, frame arrays).

Images come through pillow, videos through decord. Nothing here knows about vLLM: the request layer
turns these objects into engine inputs. Every failure is a MediaError with a one-line reason.
"""

from __future__ import annotations

import base64
import binascii
import io
import mimetypes
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vlmcli.errors import MediaError
from vlmcli.settings import VideoSampling

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"})
MAX_DOWNLOAD_BYTES = 1 << 30
DOWNLOAD_TIMEOUT_S = 30.0


@dataclass
class ImageInput:
    source: str
    image: Image.Image

    kind = "image"


@dataclass
class VideoClip:
    """Frames sampled from a video, with the SOURCE frame rate and SOURCE frame indices."""

    source: str
    frames: np.ndarray  # (num_frames, height, width, 3), uint8 RGB
    source_fps: float
    frame_indices: list[int]
    total_frames: int

    kind = "video"

    @property
    def duration_s(self) -> float:
        return self.total_frames / self.source_fps

    @property
    def timestamps_s(self) -> list[float]:
        """When each sampled frame appears in the source video, in seconds."""
        return [index / self.source_fps for index in self.frame_indices]


MediaItem = ImageInput | VideoClip


def label(reference: str) -> str:
    """A short name for a media reference in messages (data: URIs are not printed whole)."""
    if reference.startswith("data:"):
        header = reference.split(",", 1)[0]
        return f"{header},…({len(reference) // 1024} KiB)"
    return reference


def media_kind(reference: str) -> str | None:
    """'image' or 'video' judged from the name or data-URI type, or None when it cannot tell."""
    if reference.startswith("data:"):
        mime = reference[5:].split(";", 1)[0].split(",", 1)[0]
        return mime.split("/", 1)[0] if mime.startswith(("image/", "video/")) else None
    suffix = Path(urllib.parse.urlparse(reference).path if "://" in reference else reference).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def load_media(reference: str, sampling: VideoSampling, media_root: Path) -> MediaItem:
    """Load one image or video from a path, file://, http(s):// or data: reference."""
    if reference.startswith("data:"):
        payload, kind = _read_data_uri(reference), media_kind(reference)
        return _decode(reference, payload, kind, sampling)
    scheme = urllib.parse.urlparse(reference).scheme.lower()
    if scheme in ("http", "https"):
        payload, content_type = _download(reference)
        kind = media_kind(reference) or _kind_from_mime(content_type)
        return _decode(reference, payload, kind, sampling)
    if scheme == "file":
        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(reference).path))
    elif scheme and len(scheme) > 1:  # one letter is a Windows drive
        raise MediaError(f"{label(reference)}: unsupported URL scheme {scheme!r} (use a path, file://, http(s):// or data:)")
    else:
        path = Path(reference).expanduser()
    path = check_local_path(reference, path, media_root)
    kind = media_kind(str(path))
    if kind == "video":
        return load_video(reference, str(path), sampling)
    return _decode(reference, _read_file(reference, path), kind, sampling)


def check_local_path(reference: str, path: Path, media_root: Path) -> Path:
    """The resolved file, refused when missing, a folder, or outside the media root."""
    resolved = path.resolve()
    if not resolved.exists():
        raise MediaError(f"{label(reference)}: no such file")
    if resolved.is_dir():
        raise MediaError(f"{label(reference)}: is a folder, not an image or video file")
    root = media_root.expanduser().resolve()
    if not resolved.is_relative_to(root):
        raise MediaError(
            f"{label(reference)}: outside the allowed media root {root} "
            "(pass --media-root or set media.media_root in the profile)"
        )
    return resolved


def _read_file(reference: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        raise MediaError(f"{label(reference)}: permission denied") from None
    except OSError as exc:
        raise MediaError(f"{label(reference)}: cannot read: {exc.strerror or exc}") from None


def _read_data_uri(reference: str) -> bytes:
    header, sep, data = reference.partition(",")
    if not sep:
        raise MediaError("data: URI without a ',' before its data")
    try:
        if header.endswith(";base64"):
            return base64.b64decode(data, validate=False)
        return urllib.parse.unquote_to_bytes(data)
    except (binascii.Error, ValueError):
        raise MediaError(f"{header},...: data: URI is not valid base64") from None


def _download(url: str) -> tuple[bytes, str]:
    request = urllib.request.Request(url, headers={"User-Agent": "vlm-cli"})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            payload = response.read(MAX_DOWNLOAD_BYTES + 1)
            content_type = response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        raise MediaError(f"{label(url)}: download failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MediaError(f"{label(url)}: download failed: {reason}") from None
    if len(payload) > MAX_DOWNLOAD_BYTES:
        raise MediaError(f"{label(url)}: larger than {MAX_DOWNLOAD_BYTES >> 20} MiB")
    return payload, content_type


def _kind_from_mime(content_type: str | None) -> str | None:
    major = (content_type or "").split("/", 1)[0]
    return major if major in ("image", "video") else None


def _decode(reference: str, payload: bytes, kind: str | None, sampling: VideoSampling) -> MediaItem:
    if kind == "video":
        return load_video(reference, io.BytesIO(payload), sampling)
    if kind == "image":
        return ImageInput(reference, decode_image(reference, payload))
    # Unknown name: sniff the content, images first (cheap), then video.
    try:
        return ImageInput(reference, decode_image(reference, payload))
    except MediaError:
        pass
    try:
        return load_video(reference, io.BytesIO(payload), sampling)
    except MediaError:
        pass
    guessed = mimetypes.guess_type(reference)[0] or "unknown type"
    raise MediaError(
        f"{label(reference)}: unsupported format ({guessed}); images: {', '.join(sorted(IMAGE_SUFFIXES))}; "
        f"videos: {', '.join(sorted(VIDEO_SUFFIXES))}"
    )


def decode_image(reference: str, payload: bytes) -> Image.Image:
    """An RGB image from encoded bytes; corrupt or truncated data is a MediaError."""
    try:
        with Image.open(io.BytesIO(payload)) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaError(f"{label(reference)}: not a readable image ({exc.__class__.__name__}: {exc})") from None


def sample_frame_indices(total_frames: int, source_fps: float, sampling: VideoSampling) -> list[int]:
    """Frame indices spread evenly over the whole video.

    As in the Nemotron-Nano-12B-v2-VL guide: a fixed `num_frames` wins; otherwise `fps` frames per
    second of video; either way at most `max_frames` and at least one frame.
    """
    if sampling.num_frames is not None:
        wanted = sampling.num_frames
    else:
        duration = total_frames / source_fps
        wanted = max(1, round(duration * (sampling.fps or 1.0)))
    wanted = max(1, min(wanted, sampling.max_frames, total_frames))
    return np.linspace(0, total_frames - 1, wanted).round().astype(int).tolist()


def load_video(reference: str, source: str | io.BytesIO, sampling: VideoSampling) -> VideoClip:
    """Decode the sampled frames of a video with decord."""
    import decord  # decord is only needed once a video is actually read.

    try:
        reader = decord.VideoReader(source, ctx=decord.cpu(0), num_threads=2)
        total_frames = len(reader)
        source_fps = float(reader.get_avg_fps())
        if total_frames < 1 or not source_fps > 0:
            raise MediaError(f"{label(reference)}: video has no frames")
        indices = sample_frame_indices(total_frames, source_fps, sampling)
        frames = reader.get_batch(indices).asnumpy()
    except MediaError:
        raise
    except Exception as exc:  # decord raises its own DECORDError and plain RuntimeErrors
        reason = " ".join(str(exc).split())[:160]
        raise MediaError(f"{label(reference)}: not a readable video ({reason})") from None
    return VideoClip(reference, frames, source_fps, indices, total_frames)
