"""What `vlm` knows about each model family: the facts a profile cannot choose.

A profile names its family; everything family-specific (how media appear in the prompt text, which
processor argument sets the image tiles, whether EVS exists) is looked up here, so the rest of the
code never branches on model names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    # Text that marks one image / video in the prompt; vLLM's processor expands it into the media's
    # tokens. These equal `get_placeholder_str()` of the family's vLLM model class (a test checks).
    image_placeholder: str
    video_placeholder: str | None
    # vLLM model classes (config.json `architectures`) that belong to this family.
    architectures: tuple[str, ...]
    # The multimodal-processor argument that caps image tiles, if the model tiles images.
    tiles_kwarg: str | None = None
    max_tiles: int = 12
    # Efficient Video Sampling (vLLM's `video_pruning_rate`).
    supports_evs: bool = False
    # A hybrid Mamba language model: vLLM's CPU Mamba kernels cannot serve prefix caching.
    hybrid_mamba: bool = False
    # The processor computes frame timestamps from metadata as int(1000 / fps) ms per frame, so the
    # video is handed over in a millisecond time base to keep timestamps exact (see media.py).
    timestamps_from_metadata: bool = False
    # The processor wants the sampled frame rate as the `fps` argument (Qwen's temporal positions).
    wants_sampled_fps: bool = False


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            name="nemotron_nano_vl",
            title="NVIDIA Nemotron-Nano-VL v2 (hybrid Mamba)",
            image_placeholder="<image>",
            video_placeholder="<video>",
            architectures=("NemotronH_Nano_VL_V2",),
            tiles_kwarg="max_num_tiles",
            max_tiles=12,
            supports_evs=True,
            hybrid_mamba=True,
            timestamps_from_metadata=True,
        ),
        Family(
            name="qwen2_5_vl",
            title="Qwen2.5-VL",
            image_placeholder="<|vision_start|><|image_pad|><|vision_end|>",
            video_placeholder="<|vision_start|><|video_pad|><|vision_end|>",
            architectures=("Qwen2_5_VLForConditionalGeneration",),
            wants_sampled_fps=True,
        ),
        Family(
            name="minicpmv",
            title="MiniCPM-V",
            image_placeholder="(<image>./</image>)",
            video_placeholder="(<video>./</video>)",
            architectures=("MiniCPMV",),
            tiles_kwarg="max_slice_nums",
            max_tiles=9,
        ),
        Family(
            name="llama_nemotron_nano_vl",
            title="Llama-Nemotron-Nano-VL",
            image_placeholder="<image>",
            video_placeholder=None,
            architectures=("Llama_Nemotron_Nano_VL",),
            tiles_kwarg="max_dynamic_patch",
            max_tiles=12,
        ),
    )
}


def get_family(name: str) -> Family:
    """The family called `name`; KeyError names the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}") from None
