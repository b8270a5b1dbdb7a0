"""`vlm bench` for real: the command, the vLLM engine on the CPU and the tiny profiles.

Engine starts are the cost (about 30 s each), so each module fixture below is one `vlm bench`
invocation whose report several tests read: synthetic images with the vLLM baseline, a synthetic
video sweep (EVS x concurrency), the user's own files (one of them corrupt), and a `vlm serve`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime
from pathlib import Path

import pytest

from conftest import NEMOTRON, QWEN
from media_factory import write_image
from test_serve import API_KEY, server  # noqa: F401  (a real `vlm serve` of the tiny Qwen profile)

pytestmark = pytest.mark.engine

MAX_TOKENS = 5
IMAGE_FLAGS = ["--workload", "image", "--image-size", "160x120", "--num-prompts", "4", "--max-tokens", str(MAX_TOKENS)]
VIDEO_FLAGS = [
    "--workload", "video", "--video-frames", "24", "--video-size", "128x96", "--num-frames", "4",
    "--num-prompts", "8", "--max-tokens", str(MAX_TOKENS),
]
RUN_KEYS = [
    "profile", "model", "pruning_rate", "concurrency", "request_rate", "workers", "prerendered", "engine_start_s",
    "peak_host_memory_gib", "peak_gpu_memory_gib", "gpu_busy_percent", "requests", "failed", "errors", "duration_s", "request_throughput",
    "output_token_throughput", "total_token_throughput", "ttft_s", "tpot_s", "itl_s", "e2e_s", "media_s",
    "media_total_s", "prompt_tokens_per_request", "text_tokens_per_request", "vision_tokens_per_request",
    "output_tokens_per_request", "engine_args", "video_sampling",
]
LATENCIES = ["ttft_s", "tpot_s", "itl_s", "e2e_s", "media_s"]


def bench(run_vlm, *args: str, env: dict | None = None):
    result = run_vlm("bench", *args, timeout=900, env=env)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def check_report(report: dict, *, backend: str, argv: list[str]) -> None:
    """The report's top level, and every field of every run."""
    assert report["vlm_version"] and isinstance(report["vlm_version"], str)
    assert report["vllm_version"] and report["vllm_version"][0].isdigit()
    assert report["backend"] == backend
    datetime.fromisoformat(report["date"])
    assert "bench" in report["command"] and all(arg in report["command"] for arg in argv)
    assert isinstance(report["workload"], str) and report["workload"]
    plan = report["plan"]
    assert plan["num_prompts"] >= 1 and plan["max_tokens"] >= 1 and plan["concurrency"]
    runs = report["runs"]
    per_engine = len(plan["workers"]) * len(plan["concurrency"]) + (1 if plan["prerender"] else 0)
    assert len(runs) == len(plan["profiles"]) * len(plan["pruning_rates"]) * per_engine
    for run in runs:
        check_run(run, plan)


def check_run(run: dict, plan: dict) -> None:
    assert list(run)[: len(RUN_KEYS)] == RUN_KEYS, list(run)
    assert run["profile"] in plan["profiles"] and run["model"] == run["engine_args"]["model"]
    assert run["concurrency"] in plan["concurrency"]
    assert run["request_rate"] == plan["request_rate"]
    assert run["engine_start_s"] > 0 and run["peak_host_memory_gib"] > 0
    assert run["peak_gpu_memory_gib"] is None and run["gpu_busy_percent"] is None  # no GPU here
    assert run["workers"] in (0, None) or run["workers"] in plan["workers"]
    assert isinstance(run["prerendered"], bool)
    assert run["requests"] == plan["num_prompts"]
    assert 0 <= run["failed"] <= run["requests"] and isinstance(run["errors"], list)
    assert bool(run["errors"]) == bool(run["failed"])
    done = run["requests"] - run["failed"]
    assert run["duration_s"] > 0
    assert close(run["request_throughput"], done / run["duration_s"])
    out = run["output_tokens_per_request"] * done
    prompt = run["prompt_tokens_per_request"] * done
    assert close(run["output_token_throughput"], out / run["duration_s"])
    assert close(run["total_token_throughput"], (out + prompt) / run["duration_s"])
    for key in LATENCIES:
        figures = run[key]
        assert set(figures) == {"mean", "median", "p90", "p99"}, (key, figures)
        assert all(isinstance(v, (int, float)) and v >= 0 for v in figures.values()), (key, figures)
        assert figures["median"] <= figures["p90"] <= figures["p99"], (key, figures)
        assert figures["mean"] <= figures["p99"], (key, figures)  # p99 is the largest value below 100 samples
    for key in ("ttft_s", "e2e_s", "media_s"):
        assert run[key]["mean"] > 0, key
    # each request's end-to-end time holds its media loading and its first token
    assert run["e2e_s"]["median"] >= run["ttft_s"]["median"] and run["e2e_s"]["p99"] >= run["media_s"]["p99"]
    assert run["media_total_s"] >= run["media_s"]["mean"] * done * (1 - 1e-9)
    assert run["prompt_tokens_per_request"] > run["text_tokens_per_request"] > 0
    assert run["vision_tokens_per_request"] > 0
    assert close(run["text_tokens_per_request"] + run["vision_tokens_per_request"], run["prompt_tokens_per_request"])
    assert run["output_tokens_per_request"] == plan["max_tokens"]  # EOS is ignored
    assert run["engine_args"]["max_model_len"] > 0
    assert set(run["video_sampling"]) >= {"fps", "num_frames", "max_frames"}


# --- bad flags: no engine ------------------------------------------------------------------------


@pytest.mark.parametrize("args, fragment", [
    (["--concurrency", "0"], "--concurrency: a comma-separated list of whole numbers >= 1"),
    (["--concurrency", "1,x"], "--concurrency:"),
    (["--pruning-rate", "x"], "--pruning-rate: a comma-separated list of numbers"),
    (["--baseline", "foo"], "--baseline: the only baseline is 'vllm'"),
    (["--baseline", "vllm", "--server", "http://127.0.0.1:9"], "--baseline:"),
    (["--workload", "audio"], "--workload: image or video"),
    (["--image-size", "12"], "--image-size: must look like WIDTHxHEIGHT"),
    (["--workload", "video", "--video-size", "8x8"], "--video-size: must be 16..16384 pixels per side"),
    (["--profile", NEMOTRON, "--image-size", "32x32", "--num-prompts", "1", "--pruning-rate", "0,1.5"],
     "--pruning-rate: must be in [0, 1)"),
    (["--profile", QWEN, "--image-size", "32x32", "--num-prompts", "1", "--pruning-rate", "0,0.5"],
     "has no Efficient Video Sampling"),
])
def test_bad_flags_exit_2_in_one_line(run_vlm, tiny_models_dir, tmp_path, args, fragment):
    result = bench(run_vlm, *args, env={"VLM_LOG_DIR": str(tmp_path)})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vlm: error: ") and fragment in lines[0], result.stderr
    # refused before any engine started (even for the second value of a list): vLLM's log was never opened
    assert not (tmp_path / "engine.log").exists()


# --- synthetic images, two concurrency levels, the vLLM baseline, JSON to stdout and a file -------


@pytest.fixture(scope="module")
def image_bench(run_vlm, tiny_models_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("bench") / "images.json"
    argv = ["--profile", QWEN, *IMAGE_FLAGS, "--concurrency", "1,2", "--baseline", "vllm", "--json", "--output", str(output)]
    result = bench(run_vlm, *argv)
    assert result.returncode == 0, result.stderr[-3000:]
    return argv, json.loads(result.stdout), output


def test_image_workload_json_report(image_bench):
    argv, report, _ = image_bench
    check_report(report, backend="cpu", argv=argv)
    assert report["workload"] == "1 image(s) of 160x120 per request"
    plan = report["plan"]
    assert plan["image_size"] == "160x120" and plan["concurrency"] == [1, 2] and plan["baseline"] == "vllm"
    runs = report["runs"]
    assert [run["concurrency"] for run in runs] == [1, 2]
    assert all(run["failed"] == 0 and run["profile"] == QWEN and run["pruning_rate"] is None for run in runs)
    # one engine serves both levels; every request shows the same kind of image
    assert runs[0]["engine_start_s"] == runs[1]["engine_start_s"]
    assert runs[0]["prompt_tokens_per_request"] == runs[1]["prompt_tokens_per_request"]
    assert runs[0]["prompt_tokens_per_request"] == int(runs[0]["prompt_tokens_per_request"])


def test_output_file_holds_the_same_json(image_bench):
    _, report, output = image_bench
    assert json.loads(output.read_text()) == report


def test_vllm_baseline(image_bench):
    _, report, _ = image_bench
    for run in report["runs"]:
        base = run["baseline_vllm"]
        assert set(base) == {"engine_start_s", "duration_s", "requests", "request_throughput",
                             "output_token_throughput", "prompt_tokens_per_request"}
        assert base["engine_start_s"] > 0 and base["duration_s"] > 0
        assert base["requests"] == report["plan"]["num_prompts"]
        assert close(base["request_throughput"], base["requests"] / base["duration_s"])
        assert close(base["output_token_throughput"], base["requests"] * MAX_TOKENS / base["duration_s"])
        # the same prompts, token for token, as vlm sent
        assert base["prompt_tokens_per_request"] == run["prompt_tokens_per_request"]
        assert run["speedup_vs_vllm"] > 0
        assert close(run["speedup_vs_vllm"], base["duration_s"] / run["duration_s"])


def test_worker_sweep_and_prerender(run_vlm, tiny_models_dir):
    """--workers compares worker counts on one engine; --prerender adds the engine-only run. Whoever
    renders, the model gets the same prompt."""
    argv = ["--profile", QWEN, *IMAGE_FLAGS, "--concurrency", "2", "--workers", "0,1", "--prerender", "--json"]
    result = bench(run_vlm, *argv)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    check_report(report, backend="cpu", argv=argv)
    runs = report["runs"]
    assert [(run["workers"], run["prerendered"]) for run in runs] == [(0, False), (1, False), (1, True)]
    assert len({run["engine_start_s"] for run in runs}) == 1, "one engine for the whole sweep"
    assert len({run["prompt_tokens_per_request"] for run in runs}) == 1
    assert all(run["failed"] == 0 and run["output_tokens_per_request"] == MAX_TOKENS for run in runs)


# --- synthetic videos: EVS x concurrency sweep, CSV to stdout, JSON to a file --------------------


@pytest.fixture(scope="module")
def video_sweep(run_vlm, tiny_models_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("bench") / "sweep.json"
    argv = ["--profile", NEMOTRON, *VIDEO_FLAGS, "--pruning-rate", "0,0.75", "--concurrency", "1,4",
            "--csv", "--output", str(output)]
    result = bench(run_vlm, *argv)
    assert result.returncode == 0, result.stderr[-3000:]
    return argv, result.stdout, json.loads(output.read_text())


def test_video_sweep_rows_and_evs_tokens(video_sweep):
    argv, _, report = video_sweep
    check_report(report, backend="cpu", argv=argv)
    assert report["workload"] == "video of 24 frames, 128x96 at 30 fps"
    runs = report["runs"]
    assert [(run["pruning_rate"], run["concurrency"]) for run in runs] == [(0.0, 1), (0.0, 4), (0.75, 1), (0.75, 4)]
    for run in runs:
        assert run["failed"] == 0 and run["profile"] == NEMOTRON
        assert run["video_sampling"]["num_frames"] == 4
        assert run["engine_args"]["video_pruning_rate"] == run["pruning_rate"]
    full, pruned = runs[0], runs[2]
    assert runs[1]["prompt_tokens_per_request"] == full["prompt_tokens_per_request"]
    assert runs[3]["prompt_tokens_per_request"] == pruned["prompt_tokens_per_request"]
    # EVS drops video tokens only: the text is the same, the vision part shrinks
    assert pruned["text_tokens_per_request"] == full["text_tokens_per_request"]
    assert pruned["vision_tokens_per_request"] < full["vision_tokens_per_request"]
    assert pruned["prompt_tokens_per_request"] < full["prompt_tokens_per_request"]
    # a fresh engine per pruning rate
    assert runs[0]["engine_start_s"] == runs[1]["engine_start_s"] != runs[2]["engine_start_s"] == runs[3]["engine_start_s"]


def test_video_sweep_csv_has_one_row_per_run(video_sweep):
    _, stdout, report = video_sweep
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert len(rows) == len(report["runs"]) == 4
    for row, run in zip(rows, report["runs"]):
        assert row["profile"] == NEMOTRON
        assert float(row["pruning_rate"]) == run["pruning_rate"] and int(row["concurrency"]) == run["concurrency"]
        assert int(row["requests"]) == 8 and int(row["failed"]) == 0
        assert row["peak_gpu_memory_gib"] == ""  # None
        for key in LATENCIES:
            for stat in ("mean", "median", "p90", "p99"):
                assert float(row[f"{key}.{stat}"]) == pytest.approx(run[key][stat], rel=1e-9)
        assert float(row["prompt_tokens_per_request"]) == run["prompt_tokens_per_request"]
        assert float(row["output_tokens_per_request"]) == MAX_TOKENS
        assert json.loads(row["engine_args"]) == run["engine_args"]
        assert json.loads(row["video_sampling"]) == run["video_sampling"]
        assert json.loads(row["errors"]) == []


# --- the user's own files: a folder of images (one corrupt) and a video ---------------------------


@pytest.fixture(scope="module")
def files_bench(run_vlm, tiny_models_dir, media, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench-inputs")
    write_image(folder / "a.png", width=96, height=64, seed=11)
    write_image(folder / "b.jpg", width=128, height=96, seed=12)
    write_image(folder / "c.png", width=64, height=64, seed=13)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all" * 16)
    (folder / "notes.txt").write_text("not media: the folder scan skips it\n")
    output = folder.parent / "files.json"
    argv = ["--profile", QWEN, "--input", str(folder), "--input", str(media["video"]),
            "--num-prompts", "5", "--max-tokens", str(MAX_TOKENS), "--output", str(output)]
    result = bench(run_vlm, *argv)
    return argv, result, json.loads(output.read_text()), folder


def test_failed_request_exits_1_and_names_the_file(files_bench):
    argv, result, report, folder = files_bench
    assert result.returncode == 1, result.stderr[-3000:]
    check_report(report, backend="cpu", argv=argv)
    (run,) = report["runs"]
    assert run["requests"] == 5 and run["failed"] == 1
    assert len(run["errors"]) == 1 and str(folder / "broken.jpg") in run["errors"][0]
    assert report["workload"] == "5 files"


def test_real_files_workload(files_bench, media):
    _, _, report, folder = files_bench
    assert report["plan"]["inputs"] == [str(folder), str(media["video"])]
    (run,) = report["runs"]
    # four good requests: three images of different sizes and a video, all of them answered
    assert run["output_tokens_per_request"] == MAX_TOKENS
    assert run["request_throughput"] == pytest.approx(4 / run["duration_s"])


def test_table_still_prints_with_a_failure(files_bench):
    _, result, report, folder = files_bench
    lines = result.stdout.splitlines()
    assert lines[0].split("\t")[:4] == ["profile", "EVS", "workers", "conc"]
    row = lines[1].split("\t")
    assert row[0] == QWEN and row[2] == "0" and row[3] == "1" and row[-1] == "1"  # workers, conc, failed
    assert any(line.startswith("error: ") and str(folder / "broken.jpg") in line for line in lines)
    assert any(line.startswith("workload: 5 files") and "(cpu)" in line for line in lines)


# --- a running `vlm serve` (last: the server starts with the first test that needs it) -----------


def test_server_backend_matches_in_process(run_vlm, server, image_bench):  # noqa: F811
    argv = ["--profile", QWEN, *IMAGE_FLAGS, "--concurrency", "1,2", "--server", server.url, "--json"]
    result = bench(run_vlm, *argv, env={"VLM_API_KEY": API_KEY})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["backend"] == "server" and report["plan"]["server"] == server.url
    local = image_bench[1]["runs"][0]
    for run in report["runs"]:
        assert run["failed"] == 0 and run["errors"] == [] and run["requests"] == 4
        assert run["output_tokens_per_request"] == MAX_TOKENS
        # the server builds the same prompt as the in-process engine
        assert run["prompt_tokens_per_request"] == local["prompt_tokens_per_request"]
        # token timing comes through the stream too (vLLM's per-chunk token ids)
        for key in LATENCIES:
            figures = run[key]
            assert all(isinstance(v, float) and v >= 0 for v in figures.values()), (key, figures)
            assert figures["median"] <= figures["p90"] <= figures["p99"], (key, figures)
        assert run["e2e_s"]["median"] >= run["ttft_s"]["median"] > 0
        assert close(run["output_token_throughput"], 4 * MAX_TOKENS / run["duration_s"])
        assert close(run["request_throughput"], 4 / run["duration_s"])
