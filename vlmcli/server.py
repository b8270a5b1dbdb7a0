"""`vlm serve`: run vLLM's own OpenAI-compatible server as a child process, built from a profile.

vlm writes no server of its own. This module turns resolved RunSettings into the server's command
line, starts it with its output in a log file, waits until /health answers, and stops it cleanly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmcli.errors import UsageError, VlmError
from vlmcli.settings import RunSettings

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
STOP_GRACE_S = 30.0
POLL_S = 0.5
# Engine arguments that are no command-line flags of the server, or that vlm sets itself.
NOT_FLAGS = frozenset({"served_model_name"})


@dataclass
class ServerCommand:
    """The child's argv and the environment values it needs beside the inherited ones."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT

    def shell(self) -> str:
        """The command as one shell line; secrets are masked."""
        env = [f"{key}={'***' if 'KEY' in key else shlex.quote(value)}" for key, value in self.env.items()]
        return " ".join([*env, shlex.join(self.argv)])

    @property
    def base_url(self) -> str:
        return f"http://{connect_host(self.host)}:{self.port}"


def flag_args(name: str, value: Any) -> list[str]:
    """One engine argument as vLLM's argparse spells it: bools as --x/--no-x, dicts as JSON."""
    flag = "--" + name.replace("_", "-")
    if value is None:
        return []
    if isinstance(value, bool):
        return [flag if value else "--no-" + flag[2:]]
    if isinstance(value, dict):
        return [flag, json.dumps(value, separators=(",", ":"))]
    if isinstance(value, (list, tuple)):
        return [flag, *map(str, value)] if value else []
    return [flag, str(value)]


def media_io_kwargs(settings: RunSettings) -> dict[str, Any]:
    """How the server samples videos that clients send as whole files (vlm's own client sends frames).

    vLLM's loaders take `num_frames` (a count, -1 = all) and `fps` (a rate, capped by num_frames) in
    0.26 and 0.32 alike.
    """
    video = settings.video
    if video.num_frames is not None:
        return {"video": {"num_frames": min(video.num_frames, video.max_frames)}}
    return {"video": {"fps": video.fps, "num_frames": video.max_frames}}


def generation_defaults(settings: RunSettings) -> dict[str, Any]:
    """The profile's sampling as the server's defaults, for requests that do not set them.

    Keys are Hugging Face generation-config names (vLLM maps max_new_tokens to max_tokens).
    """
    names = {"max_tokens": "max_new_tokens"}
    return {names.get(key, key): value for key, value in settings.sampling.items() if value is not None}


def vllm_supports(option: str) -> bool:
    """Whether the installed vLLM's server knows a frontend option (read from its source, no import).

    Importing vLLM takes seconds; `--dry-run` and argv building must stay fast.
    """
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = Path(next(iter(spec.submodule_search_locations)))
    for relative in ("entrypoints/launchers/cli_args.py", "entrypoints/openai/cli_args.py"):
        path = root / relative
        if path.is_file() and f"{option}:" in path.read_text(encoding="utf-8", errors="replace"):
            return True
    return False


def build_command(
    settings: RunSettings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, api_key: str | None = None
) -> ServerCommand:
    """The vLLM server command for these settings."""
    media_root = settings.media_root
    if media_root == Path(media_root.anchor):
        # The server would read any file on the machine for anyone who can reach it.
        raise UsageError(
            f"media root {media_root} would let clients read every file; set media.media_root in the profile "
            "or pass --media-root with a narrower folder"
        )
    argv = [sys.executable, "-m", SERVER_MODULE]
    for name, value in settings.engine_args.items():
        if name not in NOT_FLAGS:
            argv += flag_args(name, value)
    argv += ["--served-model-name", str(settings.engine_args.get("served_model_name") or settings.profile_name)]
    argv += flag_args("media_io_kwargs", media_io_kwargs(settings))
    argv += flag_args("override_generation_config", generation_defaults(settings))
    argv += ["--allowed-local-media-path", str(media_root)]
    # vlm's client sends the frames it sampled with their true timestamps (media_io_kwargs per
    # request); vLLM >= 0.3x refuses per-request multimodal kwargs unless told to trust them.
    if vllm_supports("trust_request_mm_kwargs"):
        argv.append("--trust-request-mm-kwargs")
    # Media become placeholders joined to the text by "\n", as the in-process engine renders them,
    # so a request through the server gets the same prompt tokens.
    argv += ["--chat-template-content-format", "string"]
    argv += ["--middleware", "vlmcli.server_middleware.missing_media_is_a_client_error"]
    argv += ["--host", host, "--port", str(port)]
    env = {"VLLM_API_KEY": api_key} if api_key else {}  # not in argv, where `ps` would show it
    return ServerCommand(argv, env, host, port)


def connect_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to `host`."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def server_log_path() -> Path:
    """The server's log: beside the in-process engine's log."""
    from vlmcli.engine import engine_log_path

    return engine_log_path().with_name("server.log")


def child_env(command: ServerCommand, verbose: bool) -> dict[str, str]:
    env = {**os.environ, **command.env}
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("VLLM_LOGGING_LEVEL", "INFO")
    return env


def health_ok(base_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ServerProcess:
    """The running vLLM server; stop() forwards a signal to it and waits for it to end."""

    def __init__(self, command: ServerCommand, verbose: bool = False, log_path: Path | None = None):
        self.command = command
        self.log_path = None if verbose else (log_path or server_log_path())
        stdout: Any = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            stdout = open(self.log_path, "w", encoding="utf-8")
        try:
            # Its own session: a terminal's Ctrl+C reaches vlm, which then stops the whole group.
            self.process = subprocess.Popen(
                command.argv, env=child_env(command, verbose), stdin=subprocess.DEVNULL,
                stdout=stdout, stderr=subprocess.STDOUT if stdout else None, start_new_session=True,
            )
        except OSError as exc:
            raise VlmError(f"cannot start the vLLM server: {exc}") from None
        finally:
            if stdout is not None:
                stdout.close()
        self.started = time.perf_counter()

    def failure(self) -> VlmError:
        from vlmcli.engine import root_cause_from_log

        cause = root_cause_from_log(self.log_path) or f"exit code {self.process.returncode}"
        where = f" (full log: {self.log_path})" if self.log_path else ""
        return VlmError(f"the vLLM server stopped: {cause}{where}")

    def wait_ready(self, timeout_s: float | None = None, stop: Callable[[], bool] = lambda: False) -> float:
        """Seconds from start until /health answered; VlmError if the server dies or times out."""
        deadline = None if timeout_s is None else self.started + timeout_s
        while not stop():
            if self.process.poll() is not None:
                raise self.failure()
            if health_ok(self.command.base_url):
                return time.perf_counter() - self.started
            if deadline is not None and time.perf_counter() > deadline:
                self.stop()
                raise VlmError(f"the vLLM server was not ready after {timeout_s:.0f} s (log: {self.log_path})")
            time.sleep(POLL_S)
        return time.perf_counter() - self.started

    def stop(self, sig: int = signal.SIGTERM, grace_s: float = STOP_GRACE_S) -> int | None:
        """Send `sig` to the server's process group, wait, and kill what is left after `grace_s`."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        # vLLM's engine processes share the group; none may outlive the server.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.process.wait()


def serve_forever(
    command: ServerCommand, *, verbose: bool, say: Callable[[str], None], ready_timeout_s: float | None = None
) -> int:
    """Run the server until it ends or vlm gets SIGINT/SIGTERM; returns vlm's exit code."""
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server = ServerProcess(command, verbose)
        where = f"logging to {server.log_path}" if server.log_path else "vLLM's log follows"
        say(f"starting vLLM's OpenAI server on {command.base_url}/v1 ({where})")
        try:
            seconds = server.wait_ready(ready_timeout_s, stop=lambda: bool(received))
            if not received:
                say(f"ready in {seconds:.1f} s: {command.base_url}/v1 (Ctrl+C to stop)")
            while not received and server.process.poll() is None:
                time.sleep(POLL_S)
        except VlmError:
            server.stop()
            raise
        if not received:
            raise server.failure()
        signum = received[0]
        say("stopping the server…")
        server.stop(signum)
        return 130 if signum == signal.SIGINT else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
