"""Model profiles: YAML files that say which model to run and how.

A profile is data only. It is validated when loaded (unknown keys, wrong types and out-of-range
values are refused with the file, the key and what is allowed) and knows which of its values were
written in the file, so `vlm profiles show` can say where each setting came from.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vlmcli.errors import ProfileError, VlmError
from vlmcli.families import FAMILIES, get_family

DEFAULT_PROFILE = "nemotron-nano-12b-v2-vl-fp8"
PROFILE_SUFFIXES = (".yaml", ".yml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, validate_default=True)


class EngineSection(_Strict):
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    data_parallel_size: int = Field(1, ge=1, le=64)
    max_num_seqs: int | None = Field(None, ge=1)
    enforce_eager: bool = False
    enable_prefix_caching: bool | None = None
    kv_cache_dtype: str = "auto"
    # A fixed KV-cache size instead of a share of memory (on the CPU backend the share counts other
    # processes' memory too, so a fixed size is the dependable choice there).
    kv_cache_memory_gib: float | None = Field(None, gt=0, le=4096)
    # Processes that render requests (tokens, image tiles, video frames) beside the engine's own
    # front-end; "auto" picks from the CPU count (0 on the CPU backend, whose cores run the model).
    preprocess_workers: Annotated[int, Field(ge=0, le=64)] | Literal["auto"] = "auto"
    # Any other vLLM engine argument, passed through unchanged (vLLM validates it at start).
    extra_args: dict[str, Any] = Field(default_factory=dict)


class MediaSection(_Strict):
    image_tiles: int | None = Field(None, ge=1, le=12)
    max_images: int = Field(4, ge=0, le=64)
    max_videos: int = Field(1, ge=0, le=16)
    video_pruning_rate: float | None = Field(None, ge=0, lt=1)
    fps: float | None = Field(2.0, gt=0, le=120)
    num_frames: int | None = Field(None, ge=1, le=1024)
    max_frames: int = Field(128, ge=1, le=1024)
    media_root: str = "~"


class SamplingSection(_Strict):
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1)
    repetition_penalty: float | None = Field(None, gt=0, le=2)
    max_tokens: int = Field(1024, ge=1)


class PromptsSection(_Strict):
    image: str = "Describe this image in detail."
    video: str = "Describe this video in detail."


class Profile(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    model: str = Field(min_length=1)
    revision: str | None = None
    served_model_name: str | None = None
    family: Literal[tuple(FAMILIES)]  # type: ignore[valid-type]
    precision: Literal["bf16", "fp16", "fp32", "fp8", "nvfp4", "awq"]
    quantization: str | None = None
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    max_model_len: int = Field(ge=128, le=1_048_576)
    trust_remote_code: bool = False
    weights_gib: float | None = Field(None, ge=0)
    engine: EngineSection = Field(default_factory=EngineSection)
    media: MediaSection = Field(default_factory=MediaSection)
    sampling: SamplingSection = Field(default_factory=SamplingSection)
    system_prompt: str | None = None
    prompts: PromptsSection = Field(default_factory=PromptsSection)

    @model_validator(mode="after")
    def _fits_family(self) -> Profile:
        family = get_family(self.family)
        tiles = self.media.image_tiles
        if tiles is not None and family.tiles_kwarg is None:
            raise ValueError(f"media.image_tiles: {family.title} has no image tiles; use null")
        if tiles is not None and tiles > family.max_tiles:
            raise ValueError(f"media.image_tiles: must be 1..{family.max_tiles} for {family.title} (got {tiles})")
        if self.media.video_pruning_rate and not family.supports_evs:
            raise ValueError(f"media.video_pruning_rate: {family.title} has no EVS; use null or 0")
        if self.media.max_videos and family.video_placeholder is None:
            raise ValueError(f"media.max_videos: {family.title} takes no video; use 0")
        if self.media.fps is None and self.media.num_frames is None and self.media.max_videos:
            raise ValueError("media: set fps or num_frames so videos can be sampled")
        return self


@dataclass(frozen=True)
class LoadedProfile:
    """A validated profile plus where it came from and which keys its file set."""

    profile: Profile
    path: Path
    explicit_keys: frozenset[str]

    @property
    def name(self) -> str:
        return self.profile.name


def builtin_profiles_dir() -> Path:
    """The profiles shipped with `vlm` (the repo's `profiles/`, or its copy inside the wheel)."""
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir.parent / "profiles", package_dir / "builtin_profiles"):
        if candidate.is_dir():
            return candidate
    return package_dir.parent / "profiles"


def user_profiles_dir() -> Path:
    """User profiles live in the platform's config directory (or $VLM_CONFIG_DIR)."""
    configured = os.environ.get("VLM_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser() / "profiles"
    import typer  # Typer's get_app_dir knows each platform's config location.

    return Path(typer.get_app_dir("vlm")) / "profiles"


def _profile_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in PROFILE_SUFFIXES and p.is_file())


def list_profiles() -> list[tuple[str, Path]]:
    """(name, file) for every profile; a user profile hides a built-in one of the same name."""
    found: dict[str, Path] = {}
    for directory in (builtin_profiles_dir(), user_profiles_dir()):
        for path in _profile_files(directory):
            found[path.stem] = path
    return sorted(found.items())


def find_profile(name_or_path: str) -> Path:
    """The file for a profile name, or the given path when it names a file."""
    as_path = Path(name_or_path).expanduser()
    looks_like_path = as_path.suffix in PROFILE_SUFFIXES or os.sep in name_or_path
    if looks_like_path:
        if as_path.is_file():
            return as_path
        raise ProfileError(f"profile file not found: {name_or_path}")
    for directory in (user_profiles_dir(), builtin_profiles_dir()):
        for suffix in PROFILE_SUFFIXES:
            candidate = directory / f"{name_or_path}{suffix}"
            if candidate.is_file():
                return candidate
    known = ", ".join(name for name, _ in list_profiles()) or "none"
    raise ProfileError(f"unknown profile {name_or_path!r}; known profiles: {known} (or pass a .yaml path)")


def load_profile(name_or_path: str | None = None) -> LoadedProfile:
    """Find, read and validate a profile; with no name, $VLM_PROFILE or the default profile."""
    name_or_path = name_or_path or os.environ.get("VLM_PROFILE") or DEFAULT_PROFILE
    path = find_profile(name_or_path)
    return parse_profile_file(path)


def read_yaml(path: Path, error: type[VlmError], what: str, *, missing_ok: bool = False) -> Any:
    """A YAML file's content; an unreadable file or bad YAML becomes one `error` line naming the
    file (and the line). With `missing_ok`, a missing file reads as None, like an empty one."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        if missing_ok and isinstance(exc, FileNotFoundError):
            return None
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise error(f"{path}: invalid YAML{where}: {problem}") from None


def parse_profile_file(path: Path) -> LoadedProfile:
    """Read and validate one profile file; every problem becomes one ProfileError line."""
    data = read_yaml(path, ProfileError, "profile")
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile must be a YAML mapping of keys to values")
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(_describe_validation_error(path, exc)) from None
    if profile.name != path.stem:
        raise ProfileError(f"{path}: name: must equal the file name {path.stem!r} (got {profile.name!r})")
    return LoadedProfile(profile=profile, path=path, explicit_keys=frozenset(_dotted_keys(data)))


def expand_model_reference(loaded: LoadedProfile) -> str:
    """The profile's model with `~` and `$VARS` expanded (for local paths); hub ids pass unchanged."""
    model = loaded.profile.model
    expanded = os.path.expanduser(os.path.expandvars(model))
    unresolved = re.findall(r"\$\{?(\w+)", expanded)
    if unresolved:
        raise ProfileError(
            f"{loaded.path}: model: environment variable {unresolved[0]} is not set (model is {model!r})"
        )
    return expanded


def _dotted_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, dict) and key != "extra_args":
            keys.extend(_dotted_keys(value, prefix=f"{dotted}."))
    return keys


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Profile
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return list(model.model_fields)


def _describe_validation_error(path: Path, exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    key = ".".join(str(part) for part in loc) or "(profile)"
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc[:-1]))
        message = f"{path}: {key}: unknown key; allowed here: {allowed}"
    elif first["type"] == "missing":
        message = f"{path}: {key}: required key is missing"
    elif first["type"] == "value_error":
        # Our own cross-field checks already name their key.
        message = f"{path}: {first['msg'].removeprefix('Value error, ')}"
    else:
        message = f"{path}: {key}: {first['msg']} (got {first.get('input')!r})"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return message
