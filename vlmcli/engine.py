"""The in-process vLLM engine: an AsyncLLM that streams answers as they are generated.

vLLM and torch are imported here, inside functions, and only by commands that need a model.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from vlmcli.errors import RequestError, VlmError, one_line
from vlmcli.prepare import Preparer
from vlmcli.request import Turn, engine_prompt, render_prompt
from vlmcli.settings import RunSettings

_request_ids = itertools.count()


@dataclass
class Delta:
    """A piece of an answer; the last one of a request has `finished` set and the counts filled."""

    text: str
    new_tokens: int = 0
    finished: bool = False
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    prompt_token_ids: list[int] | None = None


def vlm_cache_dir() -> Path:
    """vlm's folder in the user cache ($XDG_CACHE_HOME, else ~/.cache): logs, benchmark media."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vlm"


def engine_log_path() -> Path:
    """Where the last run's vLLM output is kept ($VLM_LOG_DIR, else the user cache folder)."""
    return Path(os.environ.get("VLM_LOG_DIR") or vlm_cache_dir() / "logs") / "engine.log"


@contextlib.contextmanager
def engine_output(verbose: bool) -> Iterator[tuple[Path | None, TextIO]]:
    """Keep vLLM's (and its libraries') output off the terminal; yields (log path, stream for vlm).

    vLLM logs to stdout by default, which would mix with answers: its logs go to stderr. Unless
    `verbose`, stderr itself (file descriptor 2, inherited by the engine processes vLLM starts, and
    used by decord's and torch's native code) goes to a log file. vlm's own messages use the
    returned stream, which still reaches the terminal.
    """
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verbose:
        yield None, sys.stderr
        return
    path = engine_log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with open(path, "w", encoding="utf-8") as log:
        os.dup2(log.fileno(), 2)
    user_stream = os.fdopen(os.dup(saved_fd), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    try:
        yield path, user_stream
    finally:
        sys.stderr.flush()
        user_stream.close()
        os.dup2(saved_fd, 2)
        os.close(saved_fd)


def root_cause_from_log(path: Path | None) -> str | None:
    """The last 'SomeError: message' line of the engine log, if any."""
    if path is None or not path.exists():
        return None
    found = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = re.match(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$", line)
        if match and "Engine core initialization failed" not in line and "Worker failed with error" not in line:
            found = f"{match.group(1)}: {match.group(2)}"
    return one_line(found) if found else None


class Engine:
    """One loaded model. Use `await Engine.start(settings)`, then `stream()`, then `shutdown()`."""

    def __init__(self, settings: RunSettings, llm: Any, start_s: float, preparer: Preparer | None = None):
        self.settings = settings
        self.llm = llm
        self.start_s = start_s
        self.tokenizer = llm.get_tokenizer()
        self.preparer = preparer

    @classmethod
    async def start(cls, settings: RunSettings, log_path: Path | None = None) -> Engine:
        """Load the model (and start the preprocessing workers the settings ask for, meanwhile);
        a failure becomes one line with the root cause (and the log's path)."""
        started = time.perf_counter()
        preparer = None
        try:
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM

            args = AsyncEngineArgs(**settings.engine_args)
            vllm_config = args.create_engine_config()
            if settings.preprocess_workers:
                preparer = Preparer(vllm_config, settings.preprocess_workers, settings.family)
            llm = AsyncLLM.from_vllm_config(
                vllm_config, enable_log_requests=args.enable_log_requests, disable_log_stats=args.disable_log_stats
            )
        except (KeyboardInterrupt, SystemExit):
            if preparer is not None:
                preparer.close()
            raise
        except Exception as exc:
            if preparer is not None:
                preparer.close()
            cause = root_cause_from_log(log_path) or _root_cause(exc)
            where = f" (full log: {log_path})" if log_path else ""
            raise VlmError(
                f"cannot start the engine for profile {settings.profile_name} ({settings.model}): {cause}{where}"
            ) from None
        engine = cls(settings, llm, time.perf_counter() - started, preparer)
        del llm  # something in vLLM keeps this frame alive; the local must not pin the engine
        return engine

    async def chat(
        self, turns: list[Turn], *, system_prompt: str | None = None, **sampling: Any
    ) -> AsyncIterator[Delta]:
        """Stream the assistant's answer to a conversation (the interface every engine offers)."""
        prompt = await self.prepare(turns, system_prompt=system_prompt)
        async for delta in self.stream(prompt, self.sampling_params(**sampling)):
            yield delta

    async def prepare(self, turns: list[Turn], *, system_prompt: str | None = None) -> dict[str, Any]:
        """What `stream` takes for a conversation: vLLM's rendered input when workers render it,
        else the prompt dict that vLLM's front-end renders itself."""
        family = self.settings.family
        text = render_prompt(self.tokenizer, family, system_prompt, turns)
        media = [item for turn in turns for item in turn.media]
        prompt = engine_prompt(text, media, family)
        if self.preparer is not None and self.preparer.active and media:
            try:
                prompt = await self.preparer.render(prompt)
            except VlmError:
                raise
            except Exception as exc:  # what vLLM's own rendering refuses, e.g. too many tiles
                raise RequestError(describe_request_error(exc, self.settings.max_model_len)) from None
        return prompt

    def sampling_params(self, **overrides: Any) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        values = {**self.settings.sampling, **overrides}
        return SamplingParams(output_kind=RequestOutputKind.DELTA, **values)

    async def stream(self, prompt: dict[str, Any], sampling_params: Any) -> AsyncIterator[Delta]:
        """Generate one answer, yielding text as it arrives. Refusals become RequestError."""
        request_id = f"vlm-{next(_request_ids)}"
        output_tokens = 0
        try:
            async for output in self.llm.generate(prompt, sampling_params, request_id):
                completion = output.outputs[0]
                new_tokens = len(completion.token_ids)
                output_tokens += new_tokens
                if not output.finished:
                    yield Delta(completion.text, new_tokens)
                    continue
                prompt_ids = list(output.prompt_token_ids or [])
                yield Delta(
                    completion.text,
                    new_tokens,
                    finished=True,
                    prompt_tokens=len(prompt_ids),
                    output_tokens=output_tokens,
                    finish_reason=completion.finish_reason,
                    prompt_token_ids=prompt_ids,
                )
        except (KeyboardInterrupt, SystemExit, GeneratorExit, VlmError):
            raise
        except Exception as exc:
            if type(exc).__name__ == "EngineDeadError":
                raise VlmError(f"the engine stopped: {_root_cause(exc)}") from None
            raise RequestError(describe_request_error(exc, self.settings.max_model_len)) from None

    def shutdown(self) -> None:
        """Stop the engine processes now, not at interpreter exit (where vLLM's __del__ fails)."""
        llm, self.llm = self.llm, None
        if self.preparer is not None:
            self.preparer.close()
            self.preparer = None
        if llm is not None:
            llm.shutdown()
            del llm
            gc.collect()


TOO_LONG_PATTERNS = (
    # vLLM <= 0.26: "The decoder prompt (length 5000) is longer than the maximum model length of 4096."
    r"prompt \(length (?P<length>\d+)\) is longer than the maximum model length of (?P<limit>\d+)",
    # vLLM >= 0.3x: "maximum context length is 4096 tokens. However, your prompt contains 5000 input tokens"
    r"maximum context length is (?P<limit>\d+) tokens\. However, your prompt contains (?:at least )?(?P<length>\d+ (?:input tokens|characters))",
)
FIX_TOO_LONG = "shorten the prompt, lower --max-frames or --tiles, or raise max_model_len in the profile"


def describe_request_error(exc: BaseException, max_model_len: int) -> str:
    """One line for a refused request; a too-long prompt says how to fix it."""
    message = _root_cause(exc)
    for pattern in TOO_LONG_PATTERNS:
        match = re.search(pattern, message)
        if match:
            length = match["length"] if not match["length"].isdigit() else f"{match['length']} tokens"
            return f"the prompt ({length}) is longer than max_model_len {match['limit']}: {FIX_TOO_LONG}"
    if "maximum model length" in message or "maximum context length" in message:
        return f"the prompt is longer than max_model_len {max_model_len}: {FIX_TOO_LONG} ({message})"
    return message


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None and str(exc.__cause__):
        exc = exc.__cause__
    text = str(exc) or type(exc).__name__
    return one_line(text)
