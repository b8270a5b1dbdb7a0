"""Build what the engine receives: the chat-templated prompt text and the multimodal data.

Media are marked in the prompt with the family's placeholder text (the way vLLM itself renders
"string" chat templates); vLLM's processor expands each placeholder into the media's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vlmcli.families import Family
from vlmcli.media import ImageInput, MediaItem, VideoClip

# vLLM turns metadata["fps"] into a whole number of milliseconds per frame. Handing the video over in
# a millisecond time base (fps 1000, indices = source time in ms) keeps the timestamps the model sees
# exact on 23.976 / 29.97 fps sources, where int(1000 / fps) would drift by seconds per minute.
MILLISECOND_FPS = 1000.0


@dataclass
class Turn:
    """One message of a conversation; media are shown before its text."""

    role: str
    text: str
    media: list[MediaItem] = field(default_factory=list)


def placeholder(family: Family, item: MediaItem) -> str:
    if isinstance(item, VideoClip):
        if family.video_placeholder is None:
            raise ValueError(f"{family.title} takes no video")
        return family.video_placeholder
    return family.image_placeholder


def chat_messages(family: Family, system_prompt: str | None, turns: list[Turn]) -> list[dict[str, str]]:
    """OpenAI-style messages with string content, media replaced by placeholders."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for turn in turns:
        parts = [placeholder(family, item) for item in turn.media] + [turn.text]
        messages.append({"role": turn.role, "content": "\n".join(part for part in parts if part)})
    return messages


def render_prompt(tokenizer: Any, family: Family, system_prompt: str | None, turns: list[Turn]) -> str:
    """The prompt text after the model's chat template, ready for the assistant's answer."""
    messages = chat_messages(family, system_prompt, turns)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def video_metadata(clip: VideoClip, family: Family) -> dict[str, Any]:
    """The metadata vLLM reads beside the frames: the SOURCE frame rate and SOURCE frame indices."""
    if family.timestamps_from_metadata:
        fps = MILLISECOND_FPS
        indices = [round(t * 1000) for t in clip.timestamps_s]
        total = max(round(clip.duration_s * 1000), indices[-1] + 1)
    else:
        fps, indices, total = clip.source_fps, list(clip.frame_indices), clip.total_frames
    return {
        "total_num_frames": total,
        "fps": fps,
        "duration": clip.duration_s,
        "video_backend": "decord",
        "frames_indices": indices,
        "do_sample_frames": False,
    }


def engine_prompt(prompt_text: str, media: list[MediaItem], family: Family) -> dict[str, Any]:
    """The prompt dict for vLLM's `generate`: text plus images and (frames, metadata) videos."""
    images = [item.image for item in media if isinstance(item, ImageInput)]
    videos = [item for item in media if isinstance(item, VideoClip)]
    prompt: dict[str, Any] = {"prompt": prompt_text}
    multi_modal_data: dict[str, Any] = {}
    if images:
        multi_modal_data["image"] = images
    if videos:
        multi_modal_data["video"] = [(clip.frames, video_metadata(clip, family)) for clip in videos]
        if family.wants_sampled_fps:
            # Qwen places frames in time from the rate of the frames it is given.
            clip = videos[0]
            prompt["mm_processor_kwargs"] = {"fps": len(clip.frame_indices) / clip.duration_s}
    if multi_modal_data:
        prompt["multi_modal_data"] = multi_modal_data
    return prompt
