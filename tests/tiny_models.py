"""Tiny random-weight checkpoints of the model families `vlm` supports, built offline.

Tests cannot download weights, so they build small checkpoints at run time from the
real model classes, with random weights, a small byte-level BPE tokenizer that holds
every special token the model and vLLM's processor use, a chat template modelled on
the published one, and the processor settings vLLM reads:

* :func:`build_tiny_qwen2_5_vl` - ``Qwen2_5_VLForConditionalGeneration`` from
  transformers, saved with ``save_pretrained`` together with its processor files.
* :func:`build_tiny_nemotron_nano_vl` - a ``NemotronH_Nano_VL_V2`` checkpoint shaped
  like NVIDIA-Nemotron-Nano-12B-v2-VL: ``config.json`` whose ``auto_map`` names a
  configuration module written into the folder (load with ``trust_remote_code=True``),
  language model from transformers' ``NemotronHForCausalLM`` (pattern ``M-*-``: Mamba2,
  MLP, attention, MLP), a 2-layer RADIO tower from transformers' ``RadioModel`` and the
  ``mlp1`` projector, stored under the names the published checkpoint uses.

Every parameter gets a small seeded perturbation on top of its initialisation, so no
saved weight equals a default initial value (ones, zeros): a test can tell weights that
really loaded from weights an engine merely initialised.
Builds are seeded and produce byte-identical files; each takes a few seconds.

Run ``python tests/tiny_models.py ROOT`` to build both into ``ROOT/qwen2_5_vl`` and
``ROOT/nemotron_nano_vl``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast

SEED = 0
"""Seed for every random number drawn while building a checkpoint."""

MAX_VOCAB_SIZE = 1024
"""Upper bound on a tokenizer's size (the small corpus yields about 680 tokens).

Each model's vocabulary equals its tokenizer's length, so every id a random model
samples decodes to text."""

_WEIGHT_JITTER = 0.02
"""Standard deviation of the perturbation added to every parameter."""

_CORPUS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "A picture shows a red car parked in front of a small white house.",
    "Describe the image in detail. What is happening in this video?",
    "The video begins with a person walking into the room and sitting down.",
    "There are two cats on the sofa, one black and one orange.",
    "Answer the question using a single word or phrase.",
    "Summarize the main events of the clip in three sentences.",
    "The chart compares sales in 2021, 2022 and 2023 across four regions.",
    "Read the text in the image and translate it into English.",
    "You are a helpful assistant. Please answer briefly and accurately.",
    "Count the number of people visible in the scene: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10.",
    "At 12.50 seconds the camera pans left; at 30.25 seconds it zooms in.",
    "Colors: red, green, blue, yellow, purple, black, white, gray, brown.",
    "Objects: table, chair, window, door, tree, sky, road, person, dog, cup.",
    "Is there a clock on the wall? Yes, it shows a quarter past three.",
    "The weather is sunny with a few clouds over the mountains.",
] + [
    f"Frame {i} sampled at {seconds:.2f} seconds: "
    for i, seconds in enumerate(
        [0.0, 0.5, 1.0, 1.25, 2.0, 3.33, 4.75, 8.0, 12.5, 16.67, 25.0, 60.0], start=1
    )
]
"""Text the tiny BPE tokenizers are trained on (any other text still encodes, byte by byte)."""


# --------------------------------------------------------------------------- helpers


def _train_tokenizer(
    special_tokens: list[str], extra_tokens: list[str], chat_template: str, **token_roles: str
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on :data:`_CORPUS` and wrap it for transformers.

    ``special_tokens`` take the first ids, in order, and are dropped by
    ``decode(..., skip_special_tokens=True)``; ``extra_tokens`` are single tokens that stay
    in decoded text. ``token_roles`` name the ``eos_token``, ``pad_token`` etc.
    The byte-level alphabet makes every text encodable and every decode round-trip.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=MAX_VOCAB_SIZE - len(extra_tokens),
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in special_tokens],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in extra_tokens])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        chat_template=chat_template,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        **token_roles,
    )


def _jitter_parameters_(*modules: torch.nn.Module) -> None:
    """Add seeded noise to every parameter of ``modules`` (buffers stay as they are)."""
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for module in modules:
            for _, parameter in sorted(module.named_parameters(), key=lambda item: item[0]):
                noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
                parameter.add_((_WEIGHT_JITTER * noise).to(parameter.dtype))


def _checkpoint_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors ``model.save_pretrained`` writes, under their on-disk (hub) names.

    transformers renames some weights when loading (e.g. NemotronH ``backbone.`` to
    ``model.``) and reverts that on saving; going through ``save_pretrained`` yields the
    names published checkpoints use, which are the names vLLM's loaders expect.
    """
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return load_file(Path(tmp) / "model.safetensors")


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- Qwen2.5-VL

QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The published Qwen2.5-VL-Instruct chat template."""

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
"""Qwen2.5-VL's special tokens, in the published order."""

QWEN_IMAGE_PIXELS = (4 * 28 * 28, 64 * 28 * 28)
"""(min, max) pixels per image: at most 64 image tokens (one per 28x28 area)."""

QWEN_VIDEO_PIXELS = (4 * 28 * 28, 16 * 28 * 28)
"""(min, max) pixels per video frame: at most 16 tokens per pair of frames."""


def build_tiny_qwen2_5_vl(out_dir: Path) -> Path:
    """Build a tiny random-weight Qwen2.5-VL into ``out_dir`` and return ``out_dir``.

    Text model: hidden 128, 2 layers, 2 attention heads and 1 KV head of dim 64, mrope
    sections [8, 12, 12]. Vision tower: depth 2, hidden 32, output 128. Writes
    ``config.json`` (with ``architectures``), ``generation_config.json``,
    ``model.safetensors`` (hub names ``model.*``, ``lm_head.*``, ``visual.*``), the
    tokenizer files with ``chat_template.jinja``, and the processor settings (patch 14,
    merge 2; see :data:`QWEN_IMAGE_PIXELS` and :data:`QWEN_VIDEO_PIXELS`) both in
    ``processor_config.json`` and in ``preprocessor_config.json`` /
    ``video_preprocessor_config.json``.
    """
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(
        QWEN_SPECIAL_TOKENS,
        extra_tokens=["<tool_call>", "</tool_call>"],
        chat_template=QWEN_CHAT_TEMPLATE,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    token_id = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        architectures=["Qwen2_5_VLForConditionalGeneration"],
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 32768,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": [8, 12, 12],
            },
            "bos_token_id": token_id("<|endoftext|>"),
            "eos_token_id": token_id("<|im_end|>"),
            "pad_token_id": token_id("<|endoftext|>"),
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 128,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        },
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
        dtype="bfloat16",
    )

    torch.manual_seed(SEED)
    model = Qwen2_5_VLForConditionalGeneration(config)
    _jitter_parameters_(model)
    model.to(torch.bfloat16).save_pretrained(out_dir)

    GenerationConfig(
        bos_token_id=token_id("<|endoftext|>"),
        eos_token_id=[token_id("<|im_end|>"), token_id("<|endoftext|>")],
        pad_token_id=token_id("<|endoftext|>"),
    ).save_pretrained(out_dir)

    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            size={"shortest_edge": QWEN_IMAGE_PIXELS[0], "longest_edge": QWEN_IMAGE_PIXELS[1]}
        ),
        video_processor=Qwen2VLVideoProcessor(
            size={"shortest_edge": QWEN_VIDEO_PIXELS[0], "longest_edge": QWEN_VIDEO_PIXELS[1]}
        ),
        tokenizer=tokenizer,
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    # The published layout besides transformers 5's combined processor_config.json,
    # for readers that look for the separate files.
    processor.image_processor.save_pretrained(out_dir)
    processor.video_processor.save_pretrained(out_dir)
    return out_dir


# --------------------------------------------------------------------------- Nemotron-Nano-VL

NEMOTRON_CHAT_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part['type'] == 'image' -%}{{- '<image>' -}}"
    "{%- elif part['type'] == 'video' -%}{{- '<video>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- set ns = namespace(enable_thinking=true) -%}"
    "{%- for message in messages -%}"
    "{%- set content = render(message['content']) -%}"
    "{%- if message['role'] in ['system', 'user'] -%}"
    "{%- if '/no_think' in content -%}{%- set ns.enable_thinking = false -%}"
    "{%- elif '/think' in content -%}{%- set ns.enable_thinking = true -%}"
    "{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\n<|im_end|>\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- set content = render(message['content']) -%}"
    "{%- set content = content.replace('/no_think', '').replace('/think', '') -%}"
    "{%- if message['role'] == 'assistant' and '</think>' in content -%}"
    "{%- set content = content.split('</think>')[-1] -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' + content.strip() + '<|im_end|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{%- if ns.enable_thinking -%}{{- '<|im_start|>assistant\n<think>\n' -}}"
    "{%- else -%}{{- '<|im_start|>assistant\n<think></think>' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)
"""ChatML with Nemotron's reasoning switch, modelled on Nemotron-Nano-12B-v2-VL's template.

``/think`` or ``/no_think`` in a system or user message turns reasoning on or off (on by
default); the generation prompt then opens ``<think>`` or gives an empty
``<think></think>``. Media are ``<image>`` / ``<video>`` in string content; list content
(``{"type": "image"}`` parts) renders to the same placeholders.
"""

NEMOTRON_SPECIAL_TOKENS = [
    "<unk>",
    "<s>",
    "</s>",
    "<|im_start|>",
    "<|im_end|>",
    "<img>",
    "</img>",
    "<image>",
    "<video>",
    "<so_start>",
    "<so_end>",
    "<so_embedding>",
]
"""Special tokens of the tiny Nemotron tokenizer.

``<img>``, ``</img>`` and ``<image>`` (the image context token) wrap every image tile
and video frame; ``<image>`` and ``<video>`` are the prompt placeholders; the
``<so_*>`` audio tokens are referenced by vLLM's processor for audio-capable variants.
"""

NEMOTRON_IMAGE_SIZE = 128
"""Tile size in pixels (512 in the 12B model): 16 tokens per tile and per video frame."""

NEMOTRON_PATCH_SIZE = 16
"""ViT patch size; pixel shuffle (``downsample_ratio`` 0.5) merges 2 x 2 patches per token."""

NEMOTRON_NORM_MEAN = (0.48145466, 0.4578275, 0.40821073)
NEMOTRON_NORM_STD = (0.26862954, 0.26130258, 0.27577711)
"""Pixel normalisation (CLIP's), applied by vLLM's processor."""

NEMOTRON_VIT_HIDDEN = 128
"""Width of the RADIO tower (``vit_hidden_size``)."""

NEMOTRON_VIT_MAX_IMAGE_SIZE = 512
"""Largest input of the RADIO position embedding (``cpe_max_size``), 32 x 32 patches."""

NEMOTRON_PROJECTOR_HIDDEN = 256
"""Hidden size of the ``mlp1`` projector (``projector_hidden_size``)."""

NEMOTRON_RADIO_TEACHERS = [
    {"name": "teacher_a", "use_summary": True},
    {"name": "teacher_b", "use_summary": True},
]
"""One summary token per teacher; registers pad the prefix to ``NEMOTRON_REGISTER_MULTIPLE``."""

NEMOTRON_REGISTER_MULTIPLE = 8
"""RADIO's summary and register tokens together: 2 + 6."""

NEMOTRON_CONFIG_MODULE = "configuration"
"""Name of the configuration module written into the model folder (``auto_map``)."""

_NEMOTRON_CONFIG_SOURCE = '''\
"""Configuration of a tiny NemotronH_Nano_VL_V2 test checkpoint.

Mirrors the layout of the configuration shipped with NVIDIA-Nemotron-Nano-12B-v2-VL:
``llm_config`` is a NemotronH config, ``vision_config`` describes the RADIO tower
through ``args`` (a named timm ViT whose sizes the other keys override).
"""

from transformers import NemotronHConfig, PretrainedConfig


class RADIOConfig(PretrainedConfig):
    """RADIO vision tower settings."""

    def __init__(
        self,
        args=None,
        patch_size=16,
        preferred_resolution=(512, 512),
        max_resolution=2048,
        video_temporal_patch_size=1,
        separate_video_embedder=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.args = dict(args or {})
        self.patch_size = patch_size
        self.preferred_resolution = list(preferred_resolution)
        self.max_resolution = max_resolution
        self.video_temporal_patch_size = video_temporal_patch_size
        self.separate_video_embedder = separate_video_embedder


class NemotronH_Nano_VL_V2_Config(PretrainedConfig):
    """Vision-language model: RADIO tower, ``mlp1`` projector, NemotronH language model."""

    model_type = "NemotronH_Nano_VL_V2"
    is_composition = True

    def __init__(
        self,
        vision_config=None,
        llm_config=None,
        force_image_size=512,
        patch_size=16,
        downsample_ratio=0.5,
        template=None,
        ps_version="v2",
        image_tag_type="internvl",
        projector_hidden_size=4096,
        vit_hidden_size=1280,
        video_pruning_rate=0.0,
        norm_mean=(0.48145466, 0.4578275, 0.40821073),
        norm_std=(0.26862954, 0.26130258, 0.27577711),
        use_thumbnail=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(vision_config, RADIOConfig):
            vision_config = RADIOConfig(**(vision_config or {}))
        if not isinstance(llm_config, NemotronHConfig):
            llm_config = NemotronHConfig(**(llm_config or {}))
        self.vision_config = vision_config
        self.llm_config = llm_config
        self.force_image_size = force_image_size
        self.patch_size = patch_size
        self.downsample_ratio = downsample_ratio
        self.template = template
        self.ps_version = ps_version
        self.image_tag_type = image_tag_type
        self.projector_hidden_size = projector_hidden_size
        self.vit_hidden_size = vit_hidden_size
        self.video_pruning_rate = video_pruning_rate
        self.norm_mean = list(norm_mean)
        self.norm_std = list(norm_std)
        self.use_thumbnail = use_thumbnail
'''
"""Source of the configuration module written into the Nemotron model folder."""


def _nemotron_llm_config(tokenizer: PreTrainedTokenizerFast) -> dict:
    """``llm_config`` of the tiny Nemotron: hidden 128, pattern ``M-*-``, head_dim 64."""
    token_id = tokenizer.convert_tokens_to_ids
    return {
        "architectures": ["NemotronHForCausalLM"],
        "model_type": "nemotron_h",
        "vocab_size": len(tokenizer),
        "hidden_size": 128,
        "hybrid_override_pattern": "M-*-",
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 64,
        "intermediate_size": 256,
        "mlp_hidden_act": "relu2",
        "mamba_num_heads": 8,
        "mamba_head_dim": 32,
        "n_groups": 2,
        "ssm_state_size": 32,
        "conv_kernel": 4,
        "chunk_size": 128,
        "layer_norm_epsilon": 1e-5,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": False,
        "bos_token_id": token_id("<s>"),
        "eos_token_id": token_id("</s>"),
        "pad_token_id": token_id("<unk>"),
        "dtype": "bfloat16",
    }


def _nemotron_vision_config() -> dict:
    """``vision_config`` of the tiny Nemotron: a 2-layer RADIO tower 128 wide."""
    return {
        "args": {
            "model": "vit_small_patch16_224",
            "hidden_size": NEMOTRON_VIT_HIDDEN,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 4 * NEMOTRON_VIT_HIDDEN,
            "cpe_max_size": NEMOTRON_VIT_MAX_IMAGE_SIZE,
            "cls_token_per_teacher": True,
            "teachers": NEMOTRON_RADIO_TEACHERS,
            "register_multiple": NEMOTRON_REGISTER_MULTIPLE,
        },
        "patch_size": NEMOTRON_PATCH_SIZE,
        "preferred_resolution": [NEMOTRON_IMAGE_SIZE, NEMOTRON_IMAGE_SIZE],
        "max_resolution": NEMOTRON_VIT_MAX_IMAGE_SIZE,
        "video_temporal_patch_size": 1,
        "separate_video_embedder": True,
    }


def _nemotron_weights(llm_config: dict) -> dict[str, torch.Tensor]:
    """Random weights under the names of the published NemotronH_Nano_VL_V2 checkpoint.

    ``language_model.backbone.*`` / ``language_model.lm_head.*`` from transformers'
    ``NemotronHForCausalLM``; ``vision_model.radio_model.*`` from transformers'
    ``RadioModel`` (without its LayerScale weights: C-RADIO has none); ``mlp1.*``, the
    projector: RMSNorm, Linear, ReLU^2, Linear on pixel-shuffled (4x wider) features.
    """
    from transformers import NemotronHConfig, NemotronHForCausalLM, RadioConfig, RadioModel

    torch.manual_seed(SEED)
    language_model = NemotronHForCausalLM(NemotronHConfig(**llm_config))
    radio = RadioModel(
        RadioConfig(
            hidden_size=NEMOTRON_VIT_HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=2,
            mlp_ratio=4.0,
            patch_size=NEMOTRON_PATCH_SIZE,
            image_size=NEMOTRON_IMAGE_SIZE,
            max_img_size=NEMOTRON_VIT_MAX_IMAGE_SIZE,
            num_cls_tokens=len(NEMOTRON_RADIO_TEACHERS),
            num_registers=NEMOTRON_REGISTER_MULTIPLE - len(NEMOTRON_RADIO_TEACHERS),
            norm_mean=NEMOTRON_NORM_MEAN,
            norm_std=NEMOTRON_NORM_STD,
        )
    )
    shuffled = 4 * NEMOTRON_VIT_HIDDEN
    projector = torch.nn.Sequential(
        torch.nn.RMSNorm(shuffled, eps=1e-5),
        torch.nn.Linear(shuffled, NEMOTRON_PROJECTOR_HIDDEN, bias=False),
        torch.nn.ReLU(),  # stands in for ReLU^2, which has no weights
        torch.nn.Linear(NEMOTRON_PROJECTOR_HIDDEN, llm_config["hidden_size"], bias=False),
    )
    _jitter_parameters_(language_model, radio, projector)

    weights = {f"language_model.{k}": v for k, v in _checkpoint_state_dict(language_model).items()}
    weights |= {
        f"vision_model.{k}": v
        for k, v in _checkpoint_state_dict(radio).items()
        if ".layer_scale" not in k
    }
    weights |= {f"mlp1.{k}": v.detach().clone() for k, v in projector.state_dict().items()}
    return {
        k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous()
        for k, v in weights.items()
    }


def build_tiny_nemotron_nano_vl(out_dir: Path) -> Path:
    """Build a tiny random-weight NemotronH_Nano_VL_V2 into ``out_dir`` and return it.

    Shaped like NVIDIA-Nemotron-Nano-12B-v2-VL (tiles with thumbnail, pixel shuffle 0.5,
    ``video_temporal_patch_size`` 1) at 1/4 of the tile size (:data:`NEMOTRON_IMAGE_SIZE`).
    Writes ``config.json`` (``model_type`` ``NemotronH_Nano_VL_V2``, ``auto_map`` to
    ``configuration.py``, which it also writes: load with ``trust_remote_code=True``),
    ``generation_config.json``, ``model.safetensors`` and the tokenizer files with
    ``chat_template.jinja``. vLLM builds the image/video processor from ``config.json``;
    ``max_num_tiles`` is a processor kwarg, ``video_pruning_rate`` (EVS) an engine arg.
    Run it in bfloat16 (the checkpoint's dtype): vLLM's processor casts pixels to the
    config's dtype, so an engine in float32 fails in the vision tower.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(
        NEMOTRON_SPECIAL_TOKENS,
        extra_tokens=["<think>", "</think>"],
        chat_template=NEMOTRON_CHAT_TEMPLATE,
        bos_token="<s>",
        eos_token="<|im_end|>",
        unk_token="<unk>",
        pad_token="<unk>",
    )
    token_id = tokenizer.convert_tokens_to_ids
    llm_config = _nemotron_llm_config(tokenizer)
    config = {
        "architectures": ["NemotronH_Nano_VL_V2"],
        "auto_map": {"AutoConfig": f"{NEMOTRON_CONFIG_MODULE}.NemotronH_Nano_VL_V2_Config"},
        "model_type": "NemotronH_Nano_VL_V2",
        "dtype": "bfloat16",
        "llm_config": llm_config,
        "vision_config": _nemotron_vision_config(),
        "force_image_size": NEMOTRON_IMAGE_SIZE,
        "patch_size": NEMOTRON_PATCH_SIZE,
        "downsample_ratio": 0.5,
        "ps_version": "v2",
        "image_tag_type": "internvl",
        "use_thumbnail": True,
        "norm_mean": list(NEMOTRON_NORM_MEAN),
        "norm_std": list(NEMOTRON_NORM_STD),
        "vit_hidden_size": NEMOTRON_VIT_HIDDEN,
        "projector_hidden_size": NEMOTRON_PROJECTOR_HIDDEN,
        "video_pruning_rate": 0.0,
        "img_context_token_id": token_id("<image>"),
        "video_context_token_id": token_id("<video>"),
    }

    _write_json(out_dir / "config.json", config)
    (out_dir / f"{NEMOTRON_CONFIG_MODULE}.py").write_text(_NEMOTRON_CONFIG_SOURCE)
    save_file(
        _nemotron_weights(llm_config),
        out_dir / "model.safetensors",
        metadata={"format": "pt"},
    )
    GenerationConfig(
        bos_token_id=token_id("<s>"),
        eos_token_id=[token_id("</s>"), token_id("<|im_end|>")],
        pad_token_id=token_id("<unk>"),
    ).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


# --------------------------------------------------------------------------- both


def build_all(root: Path) -> dict[str, Path]:
    """Build every tiny model under ``root``; return ``{family: model folder}``."""
    root = Path(root)
    return {
        "qwen2_5_vl": build_tiny_qwen2_5_vl(root / "qwen2_5_vl"),
        "nemotron_nano_vl": build_tiny_nemotron_nano_vl(root / "nemotron_nano_vl"),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} ROOT")
    for family, path in build_all(Path(sys.argv[1])).items():
        print(f"{family}: {path}")
