"""`vlm serve` for real: vLLM's OpenAI server with the tiny Qwen profile on loopback, started once.

Clients: the OpenAI Python client, plain urllib, and `vlm describe --server` (RemoteEngine).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import NEMOTRON, QWEN, vlm_command

API_KEY = "test-key-4711"
READY_TIMEOUT_S = 400


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


# --- without a server ---------------------------------------------------------------------------


def test_flag_args_follow_vllm_argparse():
    from vlmcli.server import flag_args

    assert flag_args("enforce_eager", True) == ["--enforce-eager"]
    assert flag_args("enable_prefix_caching", False) == ["--no-enable-prefix-caching"]
    assert flag_args("limit_mm_per_prompt", {"image": 4, "video": 1}) == ["--limit-mm-per-prompt", '{"image":4,"video":1}']
    assert flag_args("max_model_len", 4096) == ["--max-model-len", "4096"]
    assert flag_args("revision", None) == []


def test_dry_run_prints_the_vllm_command(run_vlm, tiny_models_dir):
    result = run_vlm("serve", "--profile", NEMOTRON, "--port", "9123", "--api-key", "s3cret", "--dry-run")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert "s3cret" not in line and line.startswith("VLLM_API_KEY=*** ")
    argv = shlex.split(line.split(" ", 1)[1])
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    pairs = {argv[i]: argv[i + 1] for i in range(len(argv) - 1)}
    assert pairs["--model"] == str(tiny_models_dir / "nemotron_nano_vl")
    assert pairs["--served-model-name"] == NEMOTRON
    assert pairs["--host"] == "127.0.0.1" and pairs["--port"] == "9123"
    assert pairs["--allowed-local-media-path"] == "/tmp"
    assert json.loads(pairs["--mm-processor-kwargs"]) == {"max_num_tiles": 6}
    assert json.loads(pairs["--media-io-kwargs"]) == {"video": {"fps": 2.0, "num_frames": 16}}
    assert pairs["--video-pruning-rate"] == "0.0"
    # the profile's sampling is the server's default (greedy, 24 tokens)
    assert json.loads(pairs["--override-generation-config"]) == {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 24}
    assert "--trust-remote-code" in argv and "--no-enable-prefix-caching" in argv  # hybrid Mamba on the CPU


def test_dry_run_command_parses_with_installed_vllm(tiny_models_dir):
    """Every flag vlm builds exists in this vLLM's server parser (catches renamed flags)."""
    from vlmcli.commands.common import run_settings
    from vlmcli.server import build_command

    try:
        from vllm.entrypoints.launchers.cli_args import make_arg_parser  # vLLM >= 0.3x
    except ImportError:
        from vllm.entrypoints.openai.cli_args import make_arg_parser  # vLLM 0.26
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    for profile in (QWEN, NEMOTRON):
        command = build_command(run_settings(profile), "127.0.0.1", 8123)
        args = make_arg_parser(FlexibleArgumentParser()).parse_args(command.argv[3:])
        assert args.port == 8123 and args.allowed_local_media_path == "/tmp"
        assert args.served_model_name == [profile]
        assert args.limit_mm_per_prompt == {"image": 4, "video": 1}
        assert args.enforce_eager is True
        assert args.chat_template_content_format == "string"
        assert args.override_generation_config["max_new_tokens"] == 24


def test_media_root_slash_is_refused(run_vlm, tiny_models_dir):
    result = run_vlm("serve", "--profile", QWEN, "--media-root", "/", "--dry-run")
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.count("vlm: error:") == 1 and "would let clients read every file" in result.stderr


# --- one real server for the rest ---------------------------------------------------------------


class Server:
    def __init__(self, process: subprocess.Popen, port: int, log_dir: Path):
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_dir = log_dir
        self.stderr: list[str] = []
        self.ready_s: float | None = None


@pytest.fixture(scope="module")
def server(tiny_models_dir, vlm_env, tmp_path_factory):
    port = free_port()
    log_dir = tmp_path_factory.mktemp("serve-logs")
    env = {**vlm_env, **os.environ, "VLM_LOG_DIR": str(log_dir), "VLM_API_KEY": API_KEY}
    started = time.perf_counter()
    process = subprocess.Popen(
        [*vlm_command(), "serve", "--profile", QWEN, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    srv = Server(process, port, log_dir)
    ready = threading.Event()

    def read_stderr():
        for line in process.stderr:
            srv.stderr.append(line)
            if "ready in" in line:
                ready.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    while not ready.wait(1):
        if process.poll() is not None or time.perf_counter() - started > READY_TIMEOUT_S:
            process.kill()
            pytest.fail(f"vlm serve did not get ready: {''.join(srv.stderr)}")
    srv.ready_s = time.perf_counter() - started
    print(f"\n[vlm serve ready after {srv.ready_s:.1f} s]")
    yield srv
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def post(srv: Server, path: str, body: bytes | dict, key: str | None = API_KEY, timeout: float = 120):
    """(status, parsed JSON or text) for a POST; HTTP errors are returned, not raised."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(srv.url + path, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def health(srv: Server) -> int:
    with urllib.request.urlopen(srv.url + "/health", timeout=10) as response:
        return response.status


def openai_client(srv: Server, key: str = API_KEY):
    from openai import OpenAI

    return OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0, timeout=120)


def image_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def user(*parts) -> list[dict]:
    return [{"role": "user", "content": [*parts, {"type": "text", "text": "Describe it."}]}]


def test_server_says_where_it_listens(server):
    text = "".join(server.stderr)
    assert f"http://127.0.0.1:{server.port}/v1" in text
    assert str(server.log_dir / "server.log") in text  # vLLM's output is in the log, not on the terminal
    assert "Application startup complete" in (server.log_dir / "server.log").read_text()
    assert health(server) == 200


def test_openai_client_text_image_video(server, media):
    client = openai_client(server)
    assert [model.id for model in client.models.list()] == [QWEN]
    cases = {
        "text": [{"role": "user", "content": "Hello there"}],
        "image": user({"type": "image_url", "image_url": {"url": image_uri(media["image"])}}),
        # a file under the server's media root, sampled by the server (--media-io-kwargs: 2 fps)
        "video": user({"type": "video_url", "video_url": {"url": media["video"].as_uri()}}),
    }
    prompt_tokens = {}
    for name, messages in cases.items():
        answer = client.chat.completions.create(model=QWEN, messages=messages, max_tokens=5)
        assert answer.choices[0].message.content, name
        assert answer.usage.completion_tokens == 5 or answer.choices[0].finish_reason == "stop"
        prompt_tokens[name] = answer.usage.prompt_tokens
        chunks = list(client.chat.completions.create(
            model=QWEN, messages=messages, max_tokens=6, stream=True, stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        ))
        texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert len(texts) >= 2, f"{name}: not streamed"
        assert chunks[-1].usage.completion_tokens == 6 and chunks[-1].usage.prompt_tokens == prompt_tokens[name]
    # media add their tokens to the prompt
    assert prompt_tokens["image"] > prompt_tokens["text"] + 20
    assert prompt_tokens["video"] > prompt_tokens["text"] + 10


def test_plain_http_streamed_and_not(server, media):
    body = {"model": QWEN, "messages": user({"type": "image_url", "image_url": {"url": image_uri(media["image2"])}}),
            "max_tokens": 4}
    status, answer = post(server, "/v1/chat/completions", body)
    assert status == 200, answer
    assert answer["choices"][0]["message"]["content"] and answer["usage"]["prompt_tokens"] > 20

    request = urllib.request.Request(
        server.url + "/v1/chat/completions", data=json.dumps({**body, "stream": True}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.headers.get_content_type() == "text/event-stream"
        events = [line[6:] for line in response.read().decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    pieces = [json.loads(event)["choices"][0]["delta"].get("content") for event in events[:-1]]
    assert "".join(piece for piece in pieces if piece) == answer["choices"][0]["message"]["content"]  # greedy


def test_describe_through_the_server(run_vlm, server, media):
    inputs = [str(media["image"]), str(media["video"]), str(media["ntsc"]), str(media["image"].parent / "gone.png")]
    result = run_vlm("describe", *inputs, "--profile", QWEN, "--server", server.url, "--json", "--max-tokens", "6",
                     env={"VLM_API_KEY": API_KEY})
    assert result.returncode == 1, result.stderr
    rows = json_lines(result.stdout)
    assert [row["kind"] for row in rows] == ["image", "video", "video", None]
    for row in rows[:3]:
        assert row["error"] is None and row["text"]
        assert row["prompt_tokens"] > 20 and 1 <= row["output_tokens"] <= 6
        assert 0 < row["timings"]["ttft_s"] <= row["timings"]["total_s"]
    assert rows[1]["frames"] == 4 and rows[2]["frames"] == 16
    assert "Traceback" not in result.stderr and result.stderr.count("vlm: error:") == 1

    # VLM_SERVER selects client mode too; plain output has the same format as in-process
    piped = run_vlm("describe", str(media["image"]), "--profile", QWEN, "--max-tokens", "6",
                    env={"VLM_SERVER": server.url + "/v1", "VLM_API_KEY": API_KEY})
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == rows[0]["text"] + "\n"


def test_server_prompts_equal_in_process(run_vlm, server, media):
    """Same frames, timestamps and prompt text: token counts and greedy answers match in-process."""
    inputs = [str(media["image"]), str(media["video"]), str(media["ntsc"])]
    args = ("describe", *inputs, "--profile", QWEN, "--json", "--max-tokens", "8")
    remote = json_lines(run_vlm(*args, "--server", server.url, "--api-key", API_KEY).stdout)
    local = run_vlm(*args)
    assert local.returncode == 0, local.stderr
    for here, there in zip(json_lines(local.stdout), remote):
        assert (here["input"], here["prompt_tokens"], here["frames"]) == (there["input"], there["prompt_tokens"], there["frames"])
        assert here["text"] == there["text"]


def test_hostile_requests_get_4xx_and_server_keeps_serving(server, media, tmp_path_factory):
    outside = Path.home() / ".vlm-test-outside-root.png"  # a real image outside the media root /tmp
    outside.write_bytes(media["image"].read_bytes())
    try:
        bad_parts = {
            "outside root": {"type": "image_url", "image_url": {"url": outside.as_uri()}},
            "etc passwd": {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}},
            "missing file": {"type": "image_url", "image_url": {"url": (media["image"].parent / "gone.png").as_uri()}},
            "corrupt image": {"type": "image_url", "image_url": {"url": image_uri(media["corrupt"])}},
            "corrupt video": {"type": "video_url", "video_url": {"url": media["corrupt_video"].as_uri()}},
        }
        seen = {}
        for name, part in bad_parts.items():
            status, answer = post(server, "/v1/chat/completions", {"model": QWEN, "messages": user(part), "max_tokens": 4})
            seen[name] = (status, json.dumps(answer)[:300])
        refused = {name: status for name, (status, _) in seen.items() if 400 <= status < 500}
        # vLLM itself answers a missing file below the media root with 500; vlm's middleware makes it 404
        missing_status, missing_text = seen["missing file"]
        assert missing_status == 404 and "no such file" in missing_text.lower(), missing_text
        assert all(400 <= status < 500 for status, _ in seen.values()), seen
        assert "outside root" in refused and "etc passwd" in refused
    finally:
        outside.unlink()
    text = [{"role": "user", "content": "hi"}]
    status, answer = post(server, "/v1/chat/completions", {"model": QWEN, "messages": text, "max_tokens": 10**9})
    assert 400 <= status < 500 and "max" in json.dumps(answer).lower(), answer
    status, answer = post(server, "/v1/chat/completions", {"model": QWEN, "messages": text}, key="wrong-key")
    assert status == 401, answer
    status, answer = post(server, "/v1/chat/completions", {"model": QWEN, "messages": text}, key=None)
    assert status == 401, answer
    status, answer = post(server, "/v1/chat/completions", b'{"model": "' + QWEN.encode() + b'", "messages": [')
    assert 400 <= status < 500, answer
    status, answer = post(server, "/v1/chat/completions", {"model": "no-such-model", "messages": text})
    assert status == 404, answer
    # still serving
    assert health(server) == 200
    status, answer = post(server, "/v1/chat/completions", {"model": QWEN, "messages": text, "max_tokens": 3})
    assert status == 200 and answer["usage"]["completion_tokens"] >= 1


def test_client_errors_are_one_line(run_vlm, server, media):
    cases = [
        ((), {"VLM_API_KEY": "wrong-key"}, "refused the API key (401)"),
        (("--server", f"http://127.0.0.1:{free_port()}"), {}, "cannot reach the vLLM server"),
        (("--prompt", "describe " * 5000), {}, "longer than max_model_len 4096"),
    ]
    for args, env, expected in cases:
        env = {"VLM_API_KEY": API_KEY, **env}
        result = run_vlm("describe", str(media["image"]), "--profile", QWEN, "--server", server.url, *args, env=env)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("vlm: error:")]
        assert len(errors) == 1 and expected in errors[0], result.stderr


def test_32_concurrent_streams(server):
    from openai import AsyncOpenAI

    wanted = 16

    async def one(client, index):
        stream = await client.chat.completions.create(
            model=QWEN, messages=[{"role": "user", "content": f"Count to {index}."}], max_tokens=wanted,
            stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
        )
        pieces, usage = 0, None
        async for chunk in stream:
            pieces += bool(chunk.choices and chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        return pieces, usage.completion_tokens

    async def all_of_them():
        client = AsyncOpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=300)
        try:
            return await asyncio.wait_for(asyncio.gather(*(one(client, i) for i in range(32))), timeout=300)
        finally:
            await client.close()

    started = time.perf_counter()
    results = asyncio.run(all_of_them())
    elapsed = time.perf_counter() - started
    print(f"\n[32 concurrent streams of {wanted} tokens: {elapsed:.1f} s]")
    assert len(results) == 32
    assert all(tokens == wanted for _, tokens in results), results
    assert all(pieces >= 2 for pieces, _ in results)
    assert health(server) == 200


def test_sigterm_stops_cleanly(server):
    """Runs last: SIGTERM goes to vlm, which stops vLLM and its engine processes, exit code 0."""
    import psutil

    children = psutil.Process(server.process.pid).children(recursive=True)
    assert children, "vlm serve has no vLLM child"
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(90) == 0
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, alive
    assert "stopping the server" in "".join(server.stderr)
    with pytest.raises(OSError):
        health(server)
