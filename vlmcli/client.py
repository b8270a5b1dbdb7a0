"""Client mode: an engine that talks to a running `vlm serve` (or any vLLM OpenAI server).

`RemoteEngine` offers what `vlmcli.engine.Engine` offers (`settings`, `start_s`, `tokenizer`,
`chat()`, `shutdown()`), so describe, chat and bench run unchanged against a server. Media are loaded
here, as in-process, and sent inline: images as PNG data: URIs, videos as the frames vlm sampled
(vLLM's `video/jpeg` frame-sequence data URI) with their true source indices and frame rate, so the
server builds the same prompt as the in-process engine.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

from vlmcli.engine import Delta, describe_request_error
from vlmcli.errors import RequestError, VlmError, one_line
from vlmcli.media import ImageInput, MediaItem, VideoClip
from vlmcli.request import Turn, placeholder, video_metadata
from vlmcli.settings import RunSettings

# Sampling keys of the OpenAI chat API; vLLM's other sampling parameters go in the request body's
# extra fields (vLLM reads them there).
OPENAI_SAMPLING = frozenset({
    "temperature", "top_p", "max_tokens", "seed", "stop", "presence_penalty", "frequency_penalty",
    "logprobs", "top_logprobs", "n",
})
# Raw frames up to this size go lossless (PNG, the very pixels the in-process engine sees); larger
# videos go as JPEG, which keeps requests to tens of MiB at the cost of slightly different pixels.
LOSSLESS_VIDEO_BYTES = 48 << 20
JPEG_QUALITY = 95
DEFAULT_TIMEOUT_S = 600.0


def server_root(url: str) -> str:
    """http://host:port from what a user may type (a bare host:port, or a URL ending in /v1)."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise VlmError(f"--server: not an http(s) URL: {url!r}")
    path = parsed.path.rstrip("/")
    path = path[: -len("/v1")] if path.endswith("/v1") else path
    return f"{parsed.scheme}://{parsed.netloc}{path}"


def image_data_uri(image: Any) -> str:
    """A lossless PNG data: URI of a PIL image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def video_data_uri(clip: VideoClip) -> str:
    """vLLM's frame-sequence data URI: `data:video/jpeg;base64,<frame>,<frame>,…`.

    vLLM decodes each frame with pillow, which reads PNG as well as JPEG whatever the declared type.
    """
    from PIL import Image

    lossless = clip.frames.nbytes <= LOSSLESS_VIDEO_BYTES
    parts = []
    for frame in clip.frames:
        buffer = io.BytesIO()
        if lossless:
            Image.fromarray(frame).save(buffer, format="PNG", compress_level=1)
        else:
            Image.fromarray(frame).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        parts.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return "data:video/jpeg;base64," + ",".join(parts)


def video_request_kwargs(clip: VideoClip, settings: RunSettings) -> dict[str, Any]:
    """Request fields that make the server take these frames as they are, with true timestamps."""
    meta = video_metadata(clip, settings.family)
    extra: dict[str, Any] = {
        "media_io_kwargs": {"video": {
            "num_frames": -1,  # every frame sent, none dropped by the server's frame cap
            "fps": meta["fps"],
            "frames_indices": meta["frames_indices"],
            "total_num_frames": meta["total_num_frames"],
            "duration": meta["duration"],
            "do_sample_frames": False,
        }},
    }
    if settings.family.wants_sampled_fps:
        extra["mm_processor_kwargs"] = {"fps": len(clip.frame_indices) / clip.duration_s}
    return extra


def content_part(item: MediaItem) -> dict[str, Any]:
    if isinstance(item, VideoClip):
        return {"type": "video_url", "video_url": {"url": video_data_uri(item)}}
    if isinstance(item, ImageInput):
        return {"type": "image_url", "image_url": {"url": image_data_uri(item.image)}}
    raise TypeError(f"not a media item: {item!r}")


def build_request(
    settings: RunSettings, turns: list[Turn], system_prompt: str | None, sampling: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """(messages, OpenAI sampling arguments, vLLM's extra body fields) for one chat request."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    videos = []
    for turn in turns:
        for item in turn.media:
            placeholder(settings.family, item)  # refuses video for a family that takes none
        if not turn.media:
            messages.append({"role": turn.role, "content": turn.text})
            continue
        parts = [content_part(item) for item in turn.media]
        if turn.text:
            parts.append({"type": "text", "text": turn.text})
        messages.append({"role": turn.role, "content": parts})
        videos += [item for item in turn.media if isinstance(item, VideoClip)]
    if len(videos) > 1:
        # The server takes video settings per request, not per video: true timestamps need one video.
        raise RequestError(f"{len(videos)} videos in one request: through a server, vlm sends one video per request")
    values = {**settings.sampling, **sampling}
    params = {key: value for key, value in values.items() if key in OPENAI_SAMPLING and value is not None}
    extra = {key: value for key, value in values.items() if key not in OPENAI_SAMPLING and value is not None}
    extra["return_token_ids"] = True  # the prompt's token ids, as the in-process engine reports them
    if videos:
        extra.update(video_request_kwargs(videos[0], settings))
    return messages, params, extra


def error_message(exc: Exception) -> str:
    """The server's own message from an OpenAI-client error (vLLM puts it in the JSON body)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return one_line(str(inner["message"]))
        if isinstance(inner, str):
            return one_line(inner)
    return one_line(getattr(exc, "message", None) or str(exc) or type(exc).__name__)


class RemoteEngine:
    """A model served by vLLM's OpenAI server. Use `await RemoteEngine.connect(settings, url)`."""

    def __init__(
        self, settings: RunSettings, url: str, *, api_key: str | None = None, model: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S, start_s: float = 0.0,
    ):
        from openai import AsyncOpenAI

        self.settings = settings
        self.url = server_root(url)
        self.model = model or str(settings.engine_args.get("served_model_name") or settings.profile_name)
        self.start_s = start_s
        self.tokenizer = None  # the tokenizer lives on the server
        # vLLM's server accepts any key when it was started without one; the client needs some value.
        self.client = AsyncOpenAI(
            base_url=f"{self.url}/v1", api_key=api_key or os.environ.get("VLM_API_KEY") or "EMPTY",
            timeout=timeout_s, max_retries=0,
        )

    @classmethod
    async def connect(
        cls, settings: RunSettings, url: str, *, api_key: str | None = None, model: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> RemoteEngine:
        """Reach the server, check the key, and pick the served model (the profile's, or the only one)."""
        started = time.perf_counter()
        engine = cls(settings, url, api_key=api_key, model=model, timeout_s=timeout_s)
        try:
            served = [entry.id async for entry in engine.client.models.list()]
        except Exception as exc:
            await engine.aclose()
            raise engine.connection_error(exc) from None
        if engine.model not in served:
            if model is None and len(served) == 1:
                engine.model = served[0]
            else:
                await engine.aclose()
                raise VlmError(
                    f"the server at {engine.url} serves {', '.join(served) or 'no model'}, not {engine.model} "
                    f"(profile {settings.profile_name}); pass the profile it was started with"
                )
        engine.start_s = time.perf_counter() - started
        return engine

    def connection_error(self, exc: Exception) -> VlmError:
        import openai

        if isinstance(exc, openai.AuthenticationError):
            return VlmError(f"the server at {self.url} refused the API key (401): pass --api-key or set VLM_API_KEY")
        if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)):
            cause = exc.__cause__ or exc
            return VlmError(f"cannot reach the vLLM server at {self.url}: {one_line(str(cause) or type(cause).__name__)}")
        if isinstance(exc, openai.APIStatusError):
            return VlmError(f"the server at {self.url} answered HTTP {exc.status_code}: {error_message(exc)}")
        return VlmError(f"the server at {self.url} failed: {error_message(exc)}")

    async def chat(
        self, turns: list[Turn], *, system_prompt: str | None = None, **sampling: Any
    ) -> AsyncIterator[Delta]:
        """Stream the assistant's answer; the last Delta carries the server's token counts."""
        import openai

        messages, params, extra = await asyncio.to_thread(build_request, self.settings, turns, system_prompt, sampling)
        finish_reason = None
        prompt_ids: list[int] | None = None
        prompt_tokens = output_tokens = 0
        try:
            stream = await self.client.chat.completions.create(
                model=self.model, messages=messages, stream=True, stream_options={"include_usage": True},
                extra_body=extra, **params,
            )
            async for chunk in stream:
                if chunk.usage is not None:
                    prompt_tokens, output_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
                ids = getattr(chunk, "prompt_token_ids", None)
                if ids:
                    prompt_ids = list(ids)
                for choice in chunk.choices:
                    finish_reason = choice.finish_reason or finish_reason
                    text = (choice.delta and choice.delta.content) or ""
                    new_tokens = len(getattr(choice, "token_ids", None) or [])  # vLLM's return_token_ids
                    if text or new_tokens:
                        yield Delta(text, new_tokens)
        except (openai.AuthenticationError, openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise self.connection_error(exc) from None
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise VlmError(f"the server at {self.url} failed (HTTP {exc.status_code}): {error_message(exc)}") from None
            raise RequestError(describe_request_error(RuntimeError(error_message(exc)), self.settings.max_model_len)) from None
        except openai.APIError as exc:  # an error sent inside the stream
            raise RequestError(describe_request_error(RuntimeError(error_message(exc)), self.settings.max_model_len)) from None
        if prompt_ids and not prompt_tokens:
            prompt_tokens = len(prompt_ids)
        yield Delta(
            "", finished=True, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
            finish_reason=finish_reason, prompt_token_ids=prompt_ids,
        )

    async def aclose(self) -> None:
        await self.client.close()

    def shutdown(self) -> None:
        """Close the connections (the server keeps running)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        try:
            if loop is None:
                asyncio.run(self.aclose())
            else:
                self._closing = loop.create_task(self.aclose())
        except Exception:  # a client bound to a finished event loop: nothing left to close
            pass
