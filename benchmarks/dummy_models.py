"""Real-size model folders with no weights, for GPU timings with vLLM's `load_format=dummy`.

Speed depends on shapes, not on weight values: a config.json with the published sizes plus any
tokenizer gives real timings (the text is noise). The tokenizer, chat template and config module
come from the tiny test checkpoints (tests/tiny_models.py); sizes from shared/gpu/MODEL-SIZES.md.

    python benchmarks/dummy_models.py OUT_DIR   # writes OUT_DIR/nemotron_12b_v2_vl, OUT_DIR/qwen2_5_vl_7b
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

NEMOTRON_PATTERN = "M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M-"


def _copy_without_weights(source: Path, target: Path) -> dict:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.safetensors"))
    return json.loads((target / "config.json").read_text())


def nemotron_12b_v2_vl(tiny: Path, target: Path) -> Path:
    config = _copy_without_weights(tiny, target)
    assert len(NEMOTRON_PATTERN) == 62
    config["llm_config"].update(
        hybrid_override_pattern=NEMOTRON_PATTERN, num_hidden_layers=62, hidden_size=5120,
        num_attention_heads=40, num_key_value_heads=8, head_dim=128, intermediate_size=20480,
        mlp_hidden_act="relu2", mamba_num_heads=128, mamba_head_dim=80, ssm_state_size=128, n_groups=8,
        conv_kernel=4, chunk_size=128, expand=2, vocab_size=131072, max_position_embeddings=131072,
        tie_word_embeddings=False, mamba_ssm_cache_dtype="float32",
    )
    config.update(force_image_size=512, patch_size=16, downsample_ratio=0.5, ps_version="v2", use_thumbnail=True,
                  vit_hidden_size=1280, projector_hidden_size=20480)
    vision = config["vision_config"]
    vision["args"] = {
        "model": "vit_huge_patch16_224", "register_multiple": 8, "cls_token_per_teacher": True, "cpe_max_size": 2048,
        "teachers": [{"name": name, "use_summary": True} for name in ("clip", "siglip", "dino_v2", "sam")],
    }
    vision.update(max_resolution=2048, preferred_resolution=[768, 768], separate_video_embedder=True,
                  video_temporal_patch_size=1, patch_size=16)
    (target / "config.json").write_text(json.dumps(config, indent=2))
    return target


def qwen2_5_vl_7b(tiny: Path, target: Path) -> Path:
    config = _copy_without_weights(tiny, target)
    text = config.get("text_config", config)
    sizes = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                 num_attention_heads=28, num_key_value_heads=4, rope_theta=1000000.0, tie_word_embeddings=False,
                 max_position_embeddings=128000)
    text.update(sizes, layer_types=["full_attention"] * 28, max_window_layers=28)
    config.update({k: v for k, v in sizes.items() if k in config})
    for holder in (config, text):
        for key in ("rope_scaling", "rope_parameters"):
            if isinstance(holder.get(key), dict):
                holder[key]["mrope_section"] = [16, 24, 24]
    config["vision_config"].update(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                                   window_size=112, fullatt_block_indexes=[7, 15, 23, 31], patch_size=14,
                                   spatial_merge_size=2, temporal_patch_size=2)
    (target / "config.json").write_text(json.dumps(config, indent=2))
    # The published processor limits (the tiny ones keep test images small).
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = target / name
        data = json.loads(path.read_text())
        holder = data.get("image_processor", data)
        holder.update(min_pixels=3136, max_pixels=12845056)
        holder.setdefault("size", {}).update(shortest_edge=3136, longest_edge=12845056)
        path.write_text(json.dumps(data, indent=2))
    video = target / "video_preprocessor_config.json"
    data = json.loads(video.read_text())
    data.update(min_pixels=128 * 28 * 28, max_pixels=768 * 28 * 28)
    data.setdefault("size", {}).update(shortest_edge=128 * 28 * 28, longest_edge=768 * 28 * 28)
    video.write_text(json.dumps(data, indent=2))
    return target


def build(out: Path) -> dict[str, Path]:
    from tiny_models import build_all

    with tempfile.TemporaryDirectory() as scratch:
        tiny = build_all(Path(scratch))
        return {
            "nemotron_12b_v2_vl": nemotron_12b_v2_vl(tiny["nemotron_nano_vl"], out / "nemotron_12b_v2_vl"),
            "qwen2_5_vl_7b": qwen2_5_vl_7b(tiny["qwen2_5_vl"], out / "qwen2_5_vl_7b"),
        }


if __name__ == "__main__":
    for name, path in build(Path(sys.argv[1])).items():
        print(name, path)
