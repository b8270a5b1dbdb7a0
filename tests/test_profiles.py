"""Profiles: every shipped profile validates; bad ones are refused with file, key and what is allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vlmcli.errors import ProfileError, UsageError
from vlmcli.profiles import builtin_profiles_dir, load_profile, parse_profile_file
from vlmcli.settings import Overrides, resolve_settings

SHIPPED = sorted(builtin_profiles_dir().glob("*.yaml"))
REAL_MODELS = {
    "nemotron-nano-12b-v2-vl-bf16", "nemotron-nano-12b-v2-vl-fp8", "nemotron-nano-12b-v2-vl-nvfp4",
    "qwen2.5-vl-7b-instruct", "minicpm-v-2.6", "minicpm-v-2.6-awq", "llama-nemotron-nano-vl-8b",
}


def test_every_model_has_a_profile():
    assert REAL_MODELS <= {path.stem for path in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profiles_validate_and_resolve(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("VLM_TINY_MODELS_DIR", str(tmp_path))
    loaded = parse_profile_file(path)
    settings = resolve_settings(loaded, on_cpu=False)
    assert settings.engine_args["max_model_len"] == loaded.profile.max_model_len
    assert settings.engine_args["limit_mm_per_prompt"]["image"] == loaded.profile.media.max_images


def write_profile(folder: Path, name: str, **changes) -> Path:
    data = yaml.safe_load((builtin_profiles_dir() / "nemotron-nano-12b-v2-vl-bf16.yaml").read_text())
    data["name"] = name
    for dotted, value in changes.items():
        target = data
        *parents, last = dotted.split("__")
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"media__image_tiles": 20}, "media.image_tiles: Input should be less than or equal to 12 (got 20)"),
        ({"media__video_pruning_rate": 1.0}, "media.video_pruning_rate: Input should be less than 1"),
        ({"media__video_pruning_rate": -0.1}, "media.video_pruning_rate: Input should be greater than or equal to 0"),
        ({"engine__gpu_memory_utilization": "lots"}, "engine.gpu_memory_utilization: Input should be a valid number"),
        ({"media__tiles": 4}, "media.tiles: unknown key; allowed here: image_tiles, max_images"),
        ({"colour": "blue"}, "colour: unknown key; allowed here: name, description, model"),
        ({"precision": "int3"}, "precision: Input should be 'bf16'"),
        ({"family": "llava"}, "family: Input should be 'nemotron_nano_vl'"),
        ({"family": "qwen2_5_vl"}, "media.image_tiles: Qwen2.5-VL has no image tiles; use null"),
    ],
)
def test_invalid_profile_names_file_key_and_allowed(tmp_path: Path, changes, expected):
    path = write_profile(tmp_path, "broken", **changes)
    with pytest.raises(ProfileError) as caught:
        parse_profile_file(path)
    message = str(caught.value)
    assert message.startswith(str(path) + ": ")
    assert expected in message
    assert "\n" not in message


def test_invalid_yaml_and_missing_key(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nmodel: [unclosed\n")
    with pytest.raises(ProfileError, match=r"bad.yaml: invalid YAML at line \d"):
        parse_profile_file(path)
    data = yaml.safe_load((builtin_profiles_dir() / "qwen2.5-vl-7b-instruct.yaml").read_text())
    del data["max_model_len"]
    data["name"] = "nolen"
    (tmp_path / "nolen.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match="max_model_len: required key is missing"):
        parse_profile_file(tmp_path / "nolen.yaml")


def test_name_must_match_file(tmp_path: Path):
    path = write_profile(tmp_path, "one")
    path.rename(tmp_path / "two.yaml")
    with pytest.raises(ProfileError, match="name: must equal the file name 'two'"):
        parse_profile_file(tmp_path / "two.yaml")


def test_user_profile_dir_and_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VLM_CONFIG_DIR", str(tmp_path))
    (tmp_path / "profiles").mkdir()
    write_profile(tmp_path / "profiles", "mine", max_model_len=8192)
    assert load_profile("mine").profile.max_model_len == 8192
    assert load_profile(str(tmp_path / "profiles" / "mine.yaml")).name == "mine"
    with pytest.raises(ProfileError, match="unknown profile 'nope'; known profiles: .*mine"):
        load_profile("nope")
    monkeypatch.setenv("VLM_PROFILE", "mine")
    assert load_profile(None).name == "mine"


def test_flags_override_profile_with_provenance():
    loaded = load_profile("nemotron-nano-12b-v2-vl-bf16")
    settings = resolve_settings(loaded, Overrides(tiles=3, pruning_rate=0.5, num_frames=16, temperature=0.7), on_cpu=True)
    assert settings.engine_args["mm_processor_kwargs"] == {"max_num_tiles": 3}
    assert settings.engine_args["video_pruning_rate"] == 0.5
    assert settings.engine_args["enable_prefix_caching"] is False
    assert settings.video.num_frames == 16 and settings.video.fps is None
    assert settings.sampling["temperature"] == 0.7
    assert settings.sources["mm_processor_kwargs.max_num_tiles"] == "flag --tiles"
    assert settings.sources["video_pruning_rate"] == "flag --pruning-rate"
    assert settings.sources["enable_prefix_caching"].startswith("vlm: ")
    assert settings.sources["max_model_len"] == f"profile {loaded.path}"
    on_gpu = resolve_settings(loaded, on_cpu=False)
    assert "enable_prefix_caching" not in on_gpu.engine_args or on_gpu.sources["enable_prefix_caching"] != settings.sources["enable_prefix_caching"]


@pytest.mark.parametrize(
    ("profile", "overrides", "message"),
    [
        ("qwen2.5-vl-7b-instruct", Overrides(tiles=4), "--tiles: Qwen2.5-VL has no image tiles"),
        ("nemotron-nano-12b-v2-vl-bf16", Overrides(tiles=13), "--tiles: must be 1..12"),
        ("nemotron-nano-12b-v2-vl-bf16", Overrides(pruning_rate=1.0), "--pruning-rate: must be in [0, 1)"),
        ("qwen2.5-vl-7b-instruct", Overrides(pruning_rate=0.5), "no Efficient Video Sampling"),
        ("qwen2.5-vl-7b-instruct", Overrides(fps=0), "--fps: must be greater than 0"),
    ],
)
def test_bad_flags_are_usage_errors(profile, overrides, message):
    with pytest.raises(UsageError) as caught:
        resolve_settings(load_profile(profile), overrides, on_cpu=False)
    assert message in str(caught.value)


def test_profiles_commands(run_vlm):
    listed = run_vlm("profiles", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    names = {row["name"] for row in json.loads(listed.stdout)}
    assert REAL_MODELS <= names
    shown = run_vlm("profiles", "show", "qwen2.5-vl-7b-instruct", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = {row["key"]: row for row in json.loads(shown.stdout)["settings"]}
    assert rows["model"]["value"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert rows["max_model_len"]["source"].startswith("profile ")
    missing = run_vlm("profiles", "show", "no-such-profile")
    assert missing.returncode == 2
    assert "unknown profile 'no-such-profile'" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
