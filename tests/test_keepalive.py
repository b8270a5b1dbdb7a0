"""Background model servers (issue #8): a model that stays loaded between commands.

Unit tests of the plain parts first (durations, config, records and pid reuse, stage detection),
then real servers: vLLM's OpenAI server with the tiny Qwen profile on loopback, started by `vlm`
itself. The real-server tests run in file order and share servers where they can (each start costs
about 40 s on 2 CPU cores): A serves the reuse, key, ps, bench and chat tests; it is killed and
replaced by B, which then expires; two concurrent commands start C; a profile with other engine
settings replaces the idle C with D; `vlm stop` stops D. Every process a test starts is killed at
the end, even when a test fails (fixture `background`).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import QWEN, REPO, vlm_command

# --- without a server ---------------------------------------------------------------------------


def test_parse_duration():
    from vlmcli.config import DurationError, format_duration, parse_duration

    cases = {"30s": 30, "10m": 600, "1h": 3600, "2d": 172800, "0": 0, "90": 90, "1h30m": 5400, "1.5m": 90, " 5M ": 300}
    for text, seconds in cases.items():
        assert parse_duration(text) == seconds, text
    assert parse_duration(2.5) == 2.5 and parse_duration(0) == 0
    for bad in ("", "abc", "-5", "10x", "1h30", "m", "5 minutes", -1, True):
        with pytest.raises(DurationError):
            parse_duration(bad)
    assert [format_duration(s) for s in (0, 45, 245, 7800)] == ["0s", "45s", "4m05s", "2h10m"]


def test_engine_choice_precedence(tmp_path, monkeypatch):
    from vlmcli.errors import UsageError
    from vlmcli.session import engine_choice

    monkeypatch.setenv("VLM_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("VLM_BACKGROUND", raising=False)
    monkeypatch.delenv("VLM_KEEP_ALIVE", raising=False)
    choice = engine_choice()
    assert (choice.mode, choice.keep_alive_s) == ("background", 300)
    (tmp_path / "config.yaml").write_text("background: false\nkeep_alive: 10m\n")
    choice = engine_choice()
    assert (choice.mode, choice.keep_alive_s) == ("in-process", 600)
    monkeypatch.setenv("VLM_BACKGROUND", "1")
    monkeypatch.setenv("VLM_KEEP_ALIVE", "1h")
    assert (engine_choice().mode, engine_choice().keep_alive_s) == ("background", 3600)
    choice = engine_choice(in_process=True, keep_alive="0")
    assert (choice.mode, choice.keep_alive_s) == ("in-process", 0)
    assert engine_choice(server="http://127.0.0.1:1").mode == "server"
    for kwargs, env, message in [
        ({"keep_alive": "soon"}, {}, "--keep-alive: not a duration"),
        ({}, {"VLM_KEEP_ALIVE": "-1"}, "VLM_KEEP_ALIVE: not a duration"),
        ({}, {"VLM_BACKGROUND": "maybe"}, "VLM_BACKGROUND: 1 or 0"),
        ({"server": "http://x", "in_process": True}, {}, "--in-process and --server exclude each other"),
    ]:
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            with pytest.raises(UsageError, match=message):
                engine_choice(**kwargs)


def test_bad_config_is_one_line_naming_file_and_key(run_vlm, tiny_models_dir, media, tmp_path):
    cases = {
        "keepalive: 5m\n": "config.yaml: keepalive: unknown key; allowed here: background, keep_alive",
        "keep_alive: soon\n": "config.yaml: keep_alive: not a duration like 30s, 10m, 1h or 0",
        "background: maybe\n": "config.yaml: background: true or false",
        "background: [\n": "config.yaml: invalid YAML",
        "- a list\n": "config.yaml: the config file must be a YAML mapping",
    }
    for text, expected in cases.items():
        (tmp_path / "config.yaml").write_text(text)
        result = run_vlm("describe", str(media["image"]), "--profile", QWEN,
                         env={"VLM_CONFIG_DIR": str(tmp_path), "VLM_BACKGROUND": None})
        assert result.returncode == 2, (text, result.stderr)
        assert result.stdout == "" and "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vlm: error: ") and expected in lines[0], result.stderr
        assert str(tmp_path / "config.yaml") in lines[0]
    bad_flag = run_vlm("describe", str(media["image"]), "--profile", QWEN, "--keep-alive", "later")
    assert bad_flag.returncode == 2 and "--keep-alive: not a duration" in bad_flag.stderr


SAMPLE_LOG = [  # (line, stage after it): vLLM 0.32 on the CPU, then lines vLLM 0.26 prints on a GPU
    ("/x/vllm/entrypoints/openai/api_server.py:24: DeprecationWarning: `vllm.entrypoints.openai.api_server` is deprecated", "import"),
    ("(APIServer pid=1) INFO [api_utils.py:286] non-default args: {'host': '127.0.0.1'}", "engine"),
    ("(APIServer pid=1) WARNING [vllm.py:1703] Enforce eager set, disabling torch.compile, CUDAGraphs, and JIT kernel warmup.", "engine"),
    ("(APIServer pid=1) WARNING [vllm.py:1727] Inductor compilation was disabled by user settings", "engine"),
    ("(EngineCore pid=2) INFO [core.py:133] Initializing a V1 LLM engine (v0.32.0) with config: model='/m'", "engine"),
    ("(Worker pid=3) INFO [cpu_model_runner.py:68] Starting to load model /m/qwen2_5_vl...", "weights"),
    ("Loading safetensors checkpoint shards: 100% Completed | 1/1", "weights"),
    ("something vLLM may print one day", "weights"),
    ("(Worker pid=3) INFO [default_loader.py:501] Loading weights took 0.01 seconds", "weights"),
    ("(EngineCore pid=2) INFO [backends.py:548] Dynamo bytecode transform time: 6.71 s", "compile"),
    ("(EngineCore pid=2) INFO [backends.py:215] Compiling a graph for dynamic shape takes 20.1 s", "compile"),
    ("(EngineCore pid=2) INFO [gpu_worker.py:298] Available KV cache memory: 50.2 GiB", "KV cache"),
    ("(EngineCore pid=2) INFO [kv_cache_utils.py:2327] GPU KV cache size: 524,288 tokens", "KV cache"),
    ("Capturing CUDA graphs (mixed prefill-decode, PIECEWISE): 100%|██████████| 67/67", "CUDA graphs"),
    ("(EngineCore pid=2) INFO [gpu_model_runner.py:3480] Graph capturing finished in 12 secs", "CUDA graphs"),
    ("(Worker pid=3) INFO [default_loader.py:501] Loading weights took 0.01 seconds", "CUDA graphs"),  # never back
    ("(APIServer pid=1) INFO [entry.py:140] Starting vLLM server on http://127.0.0.1:18431", "server"),
    ("INFO:     Application startup complete.", "server"),
    ("", "server"),
]


def test_stage_detection_from_log_lines():
    from vlmcli.keepalive import STAGE_LABELS, STAGES, next_stage

    stage = "import"
    for line, expected in SAMPLE_LOG:
        stage = next_stage(stage, line)
        assert stage == expected, line
    assert set(STAGE_LABELS) == set(STAGES)
    assert next_stage("not a stage", "Starting to load model x") == "weights"


def test_activity_middleware_counts_requests_until_their_last_byte(tmp_path, monkeypatch):
    """vlm's ASGI middleware in the server: in flight until the answer is sent, cancelled or failed;
    probes and requests refused for a wrong key do not count as use."""
    import asyncio

    from vlmcli import server_middleware

    activity = tmp_path / "activity"
    monkeypatch.setenv("VLM_ACTIVITY_FILE", str(activity))
    monkeypatch.setattr(server_middleware, "_in_flight", 0)
    monkeypatch.setattr(server_middleware, "_last_request_at", 0.0)
    seen: list[str] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": scope["status"], "headers": []})
        seen.append(activity.read_text())  # while the answer streams
        if scope.get("hang"):
            await asyncio.sleep(3600)
        await send({"type": "http.response.body", "body": b"x", "more_body": False})

    async def sent(message):
        pass

    middleware = server_middleware.TrackActivity(app)

    async def call(path, status, hang=False):
        await middleware({"type": "http", "path": path, "status": status, "hang": hang}, None, sent)

    async def scenario():
        await call("/v1/chat/completions", 200)
        first = float(activity.read_text().split()[1])
        assert seen[-1].split()[0] == "1" and activity.read_text().split()[0] == "0" and first > 0
        await call("/health", 200)  # a probe: not even counted
        assert len(seen) == 2 and float(activity.read_text().split()[1]) == first
        await call("/v1/models", 401)
        assert float(activity.read_text().split()[1]) == first
        hanging = asyncio.create_task(call("/v1/chat/completions", 200, hang=True))
        await asyncio.sleep(0.05)
        assert activity.read_text().split()[0] == "1"
        hanging.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await hanging
        assert activity.read_text().split()[0] == "0" and float(activity.read_text().split()[1]) > first

    asyncio.run(scenario())


@pytest.fixture
def private_run_dir(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    monkeypatch.setenv("VLM_RUN_DIR", str(folder))
    return folder


def sleeper() -> subprocess.Popen:
    """A real process in its own process group, standing in for a supervisor or a server."""
    return subprocess.Popen(["sleep", "300"], start_new_session=True)


def test_records_are_private_and_pid_reuse_is_detected(private_run_dir):
    from vlmcli import keepalive

    process = sleeper()
    try:
        start = keepalive.process_start_time(process.pid)
        record = keepalive.ServerRecord(
            key="p-0123456789", profile="p", model="m", served_model_name="p", instance="ab12", pid=process.pid,
            pid_start=start, port=1, api_key="secret", started_at=time.time(), last_client_at=time.time(),
            log_path="/dev/null", supervisor_log_path="/dev/null",
        )
        keepalive.write_record(record)
        assert stat.S_IMODE(private_run_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(keepalive.record_path(record.key).stat().st_mode) == 0o600
        assert keepalive.read_record(record.key) == record
        assert keepalive.supervisor_alive(record)
        # the same pid with another start time is another process: not ours, and never signalled
        reused = replace(record, pid_start=start + 1)
        assert not keepalive.supervisor_alive(reused)
        keepalive.kill_groups(reused)
        time.sleep(0.2)
        assert process.poll() is None
        # a dead supervisor's record is cleaned up, its server's process group killed
        orphan_server = sleeper()
        dead = subprocess.Popen(["true"], start_new_session=True)
        dead.wait()
        crashed = replace(record, pid=dead.pid, pid_start=start, server_pid=orphan_server.pid,
                          server_pid_start=keepalive.process_start_time(orphan_server.pid))
        keepalive.write_record(crashed)
        assert keepalive.running_servers() == []
        assert keepalive.read_record(record.key) is None
        assert orphan_server.wait(10) == -signal.SIGKILL
        # unreadable or foreign files in the folder are skipped
        (private_run_dir / "junk.json").write_text("{not json")
        assert keepalive.list_records() == []
    finally:
        process.kill()


def test_server_key_groups_interchangeable_settings(tiny_models_dir):
    from vlmcli.commands.common import run_settings
    from vlmcli.keepalive import server_key
    from vlmcli.settings import Overrides

    base = run_settings(QWEN)
    assert server_key(base).startswith(QWEN + "-")
    # what vlm's client applies per request does not need another server
    same = run_settings(QWEN, Overrides(max_tokens=3, temperature=0.5, num_frames=4, media_root="/tmp/x"))
    assert server_key(same) == server_key(base)
    other = replace(base, engine_args={**base.engine_args, "max_num_seqs": 8})
    assert server_key(other) != server_key(base)


# --- real background servers ----------------------------------------------------------------------


class Background:
    """The environment of one module's background servers, and ways to look at them."""

    def __init__(self, run_dir: Path, env: dict[str, str]):
        self.run_dir = run_dir
        self.env = env

    def records(self) -> list[dict]:
        return [json.loads(path.read_text()) for path in sorted(self.run_dir.glob("*.json"))]

    def record(self) -> dict:
        records = self.records()
        assert len(records) == 1, records
        return records[0]

    def processes(self, marker: str) -> list[int]:
        """Live processes of this module (by VLM_RUN_DIR in their environment) whose command line
        contains `marker`."""
        import psutil

        found = []
        for process in psutil.process_iter(["pid", "cmdline", "status"]):
            try:
                if process.info["status"] == psutil.STATUS_ZOMBIE or marker not in " ".join(process.info["cmdline"] or []):
                    continue
                if process.environ().get("VLM_RUN_DIR") == str(self.run_dir):
                    found.append(process.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    def supervisors(self) -> list[int]:
        return self.processes("vlmcli.keepalive")

    def servers(self) -> list[int]:
        return self.processes("vllm.entrypoints.openai.api_server")

    def kill_all(self) -> None:
        """Kill every process group this module's servers run in (never the test's own group)."""
        own = os.getpgrp()
        for pid in self.processes(""):
            try:
                group = os.getpgid(pid)
                if group != own:
                    os.killpg(group, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture(scope="module")
def background(tiny_models_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    config = tmp_path_factory.mktemp("config")
    (config / "profiles").mkdir()
    # the tiny profile with other engine settings: another server key
    text = (REPO / "profiles" / f"{QWEN}.yaml").read_text()
    (config / "profiles" / "tiny-qwen-b.yaml").write_text(
        text.replace(f"name: {QWEN}", "name: tiny-qwen-b").replace("max_num_seqs: 16", "max_num_seqs: 8")
    )
    env = {
        "VLM_BACKGROUND": "1", "VLM_RUN_DIR": str(run_dir), "VLM_LOG_DIR": str(tmp_path_factory.mktemp("logs")),
        "VLM_CONFIG_DIR": str(config), "VLM_KEEP_ALIVE": "10m",
    }
    state = Background(run_dir, env)
    yield state
    state.kill_all()


def timed(run_vlm, *args, **kwargs):
    started = time.perf_counter()
    result = run_vlm(*args, **kwargs)
    return result, time.perf_counter() - started


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.25)


def gone(pid: int) -> bool:
    from vlmcli.keepalive import process_start_time

    return process_start_time(pid) is None


DESCRIBE = ("describe", "--profile", QWEN, "--max-tokens", "6")


def test_second_describe_reuses_the_server(run_vlm, background, media):
    image = str(media["image"])
    first, first_s = timed(run_vlm, *DESCRIBE, image, env=background.env)
    assert first.returncode == 0, first.stderr
    record = background.record()
    second, second_s = timed(run_vlm, *DESCRIBE, image, env=background.env)
    assert second.returncode == 0, second.stderr
    print(f"\n[first describe {first_s:.1f} s (server start included), second {second_s:.1f} s]")
    assert second.stdout == first.stdout and first.stdout.strip()  # greedy: the same answer
    assert background.record()["pid"] == record["pid"] and background.supervisors() == [record["pid"]]
    assert second_s < first_s / 3, (first_s, second_s)
    # the first command showed the stages while the model started; the second had nothing to wait for
    assert "loading weights" in first.stderr and "ready in the background" in first.stderr, first.stderr
    assert second.stderr == "", second.stderr
    assert record["state"] == "ready" and record["ready_at"] > record["started_at"]
    # safe by default: loopback only, the key neither in argv nor readable by others
    server_argv = Path(f"/proc/{record['server_pid']}/cmdline").read_bytes().split(b"\0")
    assert server_argv[server_argv.index(b"--host") + 1] == b"127.0.0.1"
    assert record["api_key"].encode() not in b" ".join(server_argv) and len(record["api_key"]) >= 32
    assert stat.S_IMODE(background.run_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((background.run_dir / f"{record['key']}.json").stat().st_mode) == 0o600
    # the warm-up requests (text, image, video) reached the server before it said ready
    assert Path(record["log_path"]).read_text().count('"POST /v1/chat/completions HTTP/1.1" 200') >= 3 + 2


def post_chat(url: str, key: str | None) -> int:
    body = json.dumps({"model": QWEN, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_request_without_the_key_is_refused(background):
    record = background.record()
    url = f"http://127.0.0.1:{record['port']}"
    assert post_chat(url, None) == 401
    assert post_chat(url, "not-the-key") == 401
    assert post_chat(url, record["api_key"]) == 200


def test_ps_lists_the_server(run_vlm, background):
    record = background.record()
    result = run_vlm("ps", "--json", env=background.env)
    assert result.returncode == 0, result.stderr
    (status,) = json.loads(result.stdout)
    assert (status["profile"], status["state"], status["pid"]) == (QWEN, "ready", record["pid"])
    assert status["url"] == f"http://127.0.0.1:{record['port']}"
    assert status["host_memory_bytes"] > 200 << 20  # vLLM's server and engine processes
    assert status["in_flight"] == 0 and not status["attached"]
    assert 0 <= status["idle_s"] < 600 and 0 < status["keep_alive_left_s"] <= 600
    assert status["keep_alive_s"] == 600
    plain = run_vlm("ps", env=background.env)
    assert plain.returncode == 0
    fields = plain.stdout.strip().split("\t")
    assert fields[:4] == [QWEN, "ready", status["url"], str(record["pid"])] and fields[4].endswith("GiB"), plain.stdout


def test_bench_reports_the_client_overhead(run_vlm, background):
    pid = background.record()["pid"]
    result = run_vlm("bench", "--profile", QWEN, "--image-size", "96x96", "--num-prompts", "4", "--max-tokens", "4",
                     "--json", env=background.env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (run,) = report["runs"]
    assert report["engine"] == "background" and run["failed"] == 0
    print(f"\n[bench client overhead {run['client_overhead_s'] * 1000:.1f} ms: mean TTFT "
          f"{run['ttft_s']['mean'] * 1000:.1f} ms at the client, {run['server_ttft_mean_s'] * 1000:.1f} ms in the server]")
    assert 0 < run["server_ttft_mean_s"] < run["ttft_s"]["mean"]
    assert run["client_overhead_s"] == pytest.approx(run["ttft_s"]["mean"] - run["server_ttft_mean_s"])
    assert background.record()["pid"] == pid  # the bench used the same server
    table = run_vlm("bench", "--profile", QWEN, "--image-size", "96x96", "--num-prompts", "2", "--max-tokens", "4",
                    env=background.env)
    assert table.returncode == 0 and "client overhead" in table.stdout, table.stdout + table.stderr


def test_chat_uses_the_background_server(run_vlm, background, media):
    pid = background.record()["pid"]
    result = run_vlm("chat", "--profile", QWEN, input=f"Describe {media['image']}\nAnd now?\n", env=background.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n\n") >= 2 and result.stdout.strip(), result.stdout  # two answers
    assert background.record()["pid"] == pid and "in the background" not in result.stderr, result.stderr


def test_killed_server_is_replaced(run_vlm, background, media):
    before = background.record()
    os.killpg(before["server_pid"], signal.SIGKILL)  # vLLM's server and engine, as the OOM killer might
    result = run_vlm(*DESCRIBE, str(media["image"]), env=background.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "starting a new one" in result.stderr and "ready in the background" in result.stderr, result.stderr
    after = background.record()
    assert after["pid"] != before["pid"] and after["server_pid"] != before["server_pid"]
    assert gone(before["pid"]) and gone(before["server_pid"])
    assert background.supervisors() == [after["pid"]] and background.servers() == [after["server_pid"]]


def test_keep_alive_expiry(run_vlm, background, media):
    before = background.record()
    result = run_vlm(*DESCRIBE, str(media["image"]), "--keep-alive", "2s", env=background.env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # the running server answered
    ended = time.monotonic()
    wait_until(lambda: not background.records(), 30, "the record is removed")
    wait_until(lambda: gone(before["pid"]) and gone(before["server_pid"]), 60, "the server's processes exit")
    waited = time.monotonic() - ended
    assert waited >= 1.5, f"stopped {waited:.1f} s after the last request, before its 2 s keep-alive"
    assert background.supervisors() == [] and background.servers() == []
    assert json.loads(run_vlm("ps", "--json", env=background.env).stdout) == []


def test_two_first_commands_share_one_server(background, media):
    assert not background.records()
    env = {**os.environ, **background.env}
    commands = [
        subprocess.Popen([*vlm_command(), *DESCRIBE, str(media[name])], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        for name in ("image", "image2")
    ]
    outputs = [command.communicate(timeout=600) for command in commands]
    assert [command.returncode for command in commands] == [0, 0], outputs
    assert all(out.strip() for out, _ in outputs)
    record = background.record()
    assert background.supervisors() == [record["pid"]] and background.servers() == [record["server_pid"]]
    said = sorted("Starting" if "Starting" in err else "Waiting" if "Waiting for" in err else err for _, err in outputs)
    assert said == ["Starting", "Waiting"], outputs


def test_other_settings_stop_the_idle_server(run_vlm, background, media):
    before = background.record()
    # a server in use (here a chat waiting for its next message) is never stopped for another model
    chat = subprocess.Popen([*vlm_command(), "chat", "--profile", QWEN], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **background.env}, cwd=REPO)
    try:
        wait_until(lambda: json.loads(run_vlm("ps", "--json", env=background.env).stdout)[0]["attached"], 60,
                   "the chat is attached")
        busy = run_vlm("describe", "--profile", "tiny-qwen-b", str(media["image"]), env=background.env)
        assert busy.returncode == 1, busy.stderr
        errors = [line for line in busy.stderr.splitlines() if line.startswith("vlm: error:")]
        assert len(errors) == 1 and f"the background server of profile {QWEN} is in use by another command" in errors[0]
        assert background.record()["pid"] == before["pid"] and not gone(before["server_pid"])
    finally:
        chat.communicate("Hello\n", timeout=120)
    assert chat.returncode == 0
    result = run_vlm("describe", "--profile", "tiny-qwen-b", "--max-tokens", "4", str(media["image"]), env=background.env)
    assert result.returncode == 0, result.stderr
    assert f"stopping the idle background server of profile {QWEN}" in result.stderr, result.stderr
    assert gone(before["pid"]) and gone(before["server_pid"])
    after = background.record()
    assert after["profile"] == "tiny-qwen-b" and after["key"] != before["key"]


def test_stop(run_vlm, background):
    record = background.record()
    missing = run_vlm("stop", QWEN, env=background.env)
    assert missing.returncode == 1 and "no background server of profile tiny-qwen2.5-vl" in missing.stderr
    assert "running: tiny-qwen-b" in missing.stderr and "Traceback" not in missing.stderr
    result = run_vlm("stop", env=background.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"stopped tiny-qwen-b (pid {record['pid']}")
    assert gone(record["pid"]) and gone(record["server_pid"]) and not background.records()
    again = run_vlm("stop", "--all", env=background.env)
    assert again.returncode == 1 and again.stderr.strip() == "vlm: error: no background server is running"
