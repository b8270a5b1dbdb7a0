"""How a model command gets its engine: one async context manager for describe, chat and bench.

Three ways, in this order of precedence:
- `--server URL`: a server the user runs (`vlm serve`); vlm only connects to it;
- `--in-process` (or `background: false` in config.yaml, or VLM_BACKGROUND=0): vLLM in this process,
  loaded for this command only;
- otherwise a background server for the profile (vlmcli.keepalive): reused when one runs, started
  when none does, and left loaded for the keep-alive time after the command.

The manager also keeps vLLM's output off the terminal (engine_output) for the command's lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from vlmcli.errors import UsageError, VlmError


@dataclass(frozen=True)
class EngineChoice:
    """Where the model runs for one command."""

    server: str | None = None
    api_key: str | None = None
    background: bool = True
    keep_alive_s: float = 300.0

    @property
    def mode(self) -> str:
        return "server" if self.server else ("background" if self.background else "in-process")


def engine_choice(
    server: str | None = None, api_key: str | None = None, in_process: bool = False, keep_alive: str | None = None
) -> EngineChoice:
    """Resolve flags, environment (VLM_BACKGROUND, VLM_KEEP_ALIVE) and config.yaml; bad values are
    UsageErrors naming where they came from."""
    from vlmcli.config import DurationError, env_value, load_config, parse_duration, parse_switch
    from vlmcli.keepalive import DEFAULT_KEEP_ALIVE_S

    if server and in_process:
        raise UsageError("--in-process and --server exclude each other: one loads the model here, the other uses a running server")
    config = load_config()
    if in_process:
        background = False
    elif env_value("VLM_BACKGROUND") is not None:
        background = parse_switch(env_value("VLM_BACKGROUND"), "VLM_BACKGROUND")
    else:
        background = config.background if config.background is not None else True
    keep_alive_s = config.keep_alive_s if config.keep_alive_s is not None else DEFAULT_KEEP_ALIVE_S
    for where, text in (("VLM_KEEP_ALIVE", env_value("VLM_KEEP_ALIVE")), ("--keep-alive", keep_alive)):
        if text is not None:
            try:
                keep_alive_s = parse_duration(text)
            except DurationError as exc:
                raise UsageError(f"{where}: {exc}") from None
    return EngineChoice(server=server or None, api_key=api_key, background=background, keep_alive_s=keep_alive_s)


class ModelSession:
    """Opens engines the chosen way and closes (or detaches from) each one when done."""

    def __init__(self, choice: EngineChoice, verbose: bool, log_path: Path | None, messages: IO[str]):
        self.choice = choice
        self.verbose = verbose
        self.log_path = log_path
        self.messages = messages
        self._open: list[tuple[Any, Any]] = []  # (engine, background attachment or None)

    def say(self, line: str) -> None:
        print(f"vlm: {line}", file=self.messages, flush=True)

    async def open(self, settings: Any) -> Any:
        """An engine for these settings, with `.chat()`, `.settings` and `.start_s`."""
        if self.choice.server:
            from vlmcli.client import RemoteEngine

            engine = await RemoteEngine.connect(settings, self.choice.server, api_key=self.choice.api_key)
            self._open.append((engine, None))
            return engine
        if not self.choice.background:
            from vlmcli.engine import Engine
            from vlmcli.render import progress

            with progress(f"Loading {settings.model} (profile {settings.profile_name})…"):
                engine = await Engine.start(settings, self.log_path)
            self._open.append((engine, None))
            return engine
        return await self._open_background(settings)

    async def _open_background(self, settings: Any) -> Any:
        from vlmcli import keepalive
        from vlmcli.client import RemoteEngine

        began = time.perf_counter()
        # Locks and process checks take milliseconds; no thread needed.
        attachment = keepalive.attach(settings, self.choice.keep_alive_s, self.say)
        try:
            record = await self._wait_until_ready(attachment)
            engine = await RemoteEngine.connect(settings, record.url, api_key=record.api_key)
        except BaseException:
            attachment.detach(self.choice.keep_alive_s)
            raise
        engine.start_s = time.perf_counter() - began
        self._open.append((engine, attachment))
        return engine

    async def _wait_until_ready(self, attachment: Any) -> Any:
        """Show the start-up stage and elapsed time until the server is ready (or fails)."""
        from vlmcli import keepalive
        from vlmcli.config import format_duration
        from vlmcli.render import StageProgress

        record = attachment.record
        if record.state == "ready":
            return record
        title = f"{'Starting' if attachment.started_here else 'Waiting for'} {record.profile} in the background"
        tail = _LogTail(Path(record.log_path)) if self.verbose else None
        with StageProgress(title, self.messages) as shown:
            while True:
                if tail is not None:
                    tail.copy_to(self.messages)
                current = keepalive.read_record(record.key)
                where = f"(logs: {record.log_path}, {record.supervisor_log_path})"
                if current is None or current.instance != record.instance:
                    raise VlmError(f"the background server of profile {record.profile} stopped while starting {where}")
                if current.state == "ready":
                    keep = self.choice.keep_alive_s
                    stays = f"stays loaded {format_duration(keep)} after the last request" if keep else "stops when this command ends"
                    shown.finish(f"{record.profile} is ready in the background ({time.time() - current.started_at:.1f} s; {stays})")
                    return current
                if current.state in ("failed", "crashed"):
                    raise VlmError(f"the background server of profile {record.profile} could not start: {current.error} {where}")
                if not keepalive.supervisor_alive(current):
                    raise VlmError(f"the background server of profile {record.profile} stopped while starting {where}")
                shown.update(keepalive.STAGE_LABELS.get(current.stage, current.stage), time.time() - current.started_at)
                await asyncio.sleep(0.2)

    async def close(self, engine: Any) -> None:
        """Close one engine now (bench does, before the next profile's starts)."""
        for index, (opened, attachment) in enumerate(self._open):
            if opened is engine:
                del self._open[index]
                await self._close(opened, attachment)
                return

    async def close_all(self) -> None:
        while self._open:
            engine, attachment = self._open.pop()
            await self._close(engine, attachment)

    async def _close(self, engine: Any, attachment: Any) -> None:
        try:
            if hasattr(engine, "aclose"):
                await engine.aclose()
            else:
                engine.shutdown()
        finally:
            if attachment is not None:
                attachment.detach(self.choice.keep_alive_s)


class _LogTail:
    """New lines of a log file, for --verbose while a background server starts."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0

    def copy_to(self, stream: IO[str]) -> None:
        with contextlib.suppress(OSError):
            with open(self.path, encoding="utf-8", errors="replace") as log:
                log.seek(self.offset)
                text = log.read()
                self.offset = log.tell()
            if text:
                stream.write(text)
                stream.flush()


@contextlib.asynccontextmanager
async def model_session(choice: EngineChoice, verbose: bool) -> AsyncIterator[ModelSession]:
    """Every model command's frame: vLLM's output to the engine log, vlm's messages to the
    terminal, and every engine opened inside closed (or detached from) at the end."""
    from vlmcli.engine import engine_output
    from vlmcli.render import use_message_stream

    with engine_output(verbose) as (log_path, messages):
        use_message_stream(messages)
        session = ModelSession(choice, verbose, log_path, messages)
        try:
            yield session
        finally:
            try:
                await session.close_all()
            finally:
                use_message_stream(None)
