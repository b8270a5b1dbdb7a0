"""The request layer: placeholders match vLLM's model classes; video metadata keeps true timestamps."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from vlmcli.families import FAMILIES, get_family
from vlmcli.media import VideoClip
from vlmcli.request import Turn, chat_messages, engine_prompt, video_metadata

VLLM_CLASSES = {
    "nemotron_nano_vl": ("vllm.model_executor.models.nano_nemotron_vl", "NemotronH_Nano_VL_V2"),
    "qwen2_5_vl": ("vllm.model_executor.models.qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration"),
    "minicpmv": ("vllm.model_executor.models.minicpmv", "MiniCPMV"),
    "llama_nemotron_nano_vl": ("vllm.model_executor.models.nemotron_vl", "LlamaNemotronVLChatModel"),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_placeholders_equal_vllm_model_class(name):
    module, cls_name = VLLM_CLASSES[name]
    cls = getattr(importlib.import_module(module), cls_name)
    family = get_family(name)
    assert cls.get_placeholder_str("image", 1) == family.image_placeholder
    if family.video_placeholder is None:  # an image-only model: vLLM refuses or has no video marker
        try:
            assert cls.get_placeholder_str("video", 1) is None
        except ValueError:
            pass
    else:
        assert cls.get_placeholder_str("video", 1) == family.video_placeholder


def ntsc_clip(indices: list[int]) -> VideoClip:
    frames = np.zeros((len(indices), 8, 8, 3), np.uint8)
    return VideoClip("ntsc.mp4", frames, 24000 / 1001, indices, total_frames=3000)


def test_nemotron_metadata_gives_true_timestamps_through_vllms_arithmetic():
    clip = ntsc_clip([0, 1000, 2999])
    metadata = video_metadata(clip, get_family("nemotron_nano_vl"))
    # vLLM computes: timestamp = index * int(1000 / fps) / 1000
    step_ms = int(1000.0 / metadata["fps"])
    seen = [index * step_ms / 1000 for index in metadata["frames_indices"]]
    assert seen == pytest.approx(clip.timestamps_s, abs=0.0005)
    assert seen[1] == pytest.approx(41.708, abs=0.001)  # 1000 frames at 23.976 fps, not 41.0
    naive = [index * int(1000 / clip.source_fps) / 1000 for index in clip.frame_indices]
    assert abs(naive[1] - clip.timestamps_s[1]) > 0.5  # what source fps alone would have given


def test_qwen_metadata_keeps_source_fps_and_indices_and_sampled_rate():
    clip = ntsc_clip([0, 1500, 2999])
    family = get_family("qwen2_5_vl")
    metadata = video_metadata(clip, family)
    assert metadata["fps"] == clip.source_fps and metadata["frames_indices"] == [0, 1500, 2999]
    prompt = engine_prompt("text", [clip], family)
    frames, sent = prompt["multi_modal_data"]["video"][0]
    assert frames is clip.frames and sent == metadata
    assert prompt["mm_processor_kwargs"]["fps"] == pytest.approx(3 / clip.duration_s)


def test_chat_messages_place_media_before_text():
    family = get_family("nemotron_nano_vl")
    clip = ntsc_clip([0])
    messages = chat_messages(family, "/no_think", [Turn("user", "What happens?", [clip])])
    assert messages == [
        {"role": "system", "content": "/no_think"},
        {"role": "user", "content": "<video>\nWhat happens?"},
    ]


def test_too_long_messages_of_both_vllm_versions_become_one_actionable_line():
    from vlmcli.engine import describe_request_error

    old = ValueError("The decoder prompt (length 5000) is longer than the maximum model length of 4096. Make sure")
    new = ValueError("This model's maximum context length is 4096 tokens. However, your prompt contains at least "
                     "4097 input tokens, which exceeds this limit even without any output tokens.")
    chars = ValueError("This model's maximum context length is 4096 tokens. However, your prompt contains 90000 "
                       "characters (more than 81920 characters, which is the upper bound for 4096 input tokens).")
    assert describe_request_error(old, 4096).startswith("the prompt (5000 tokens) is longer than max_model_len 4096: shorten")
    assert describe_request_error(new, 4096).startswith("the prompt (4097 input tokens) is longer than max_model_len 4096")
    assert describe_request_error(chars, 4096).startswith("the prompt (90000 characters) is longer than max_model_len 4096")
