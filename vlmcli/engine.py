"""The in-process vLLM engine: an AsyncLLM that streams answers as they are generated.

vLLM and torch are imported here, inside functions, and only by commands that need a model.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from vlmcli.errors import RequestError, VlmError, one_line
from vlmcli.settings import RunSettings

_request_ids = itertools.count()


@dataclass
class Delta:
    """A piece of an answer; the last one of a request has `finished` set and the counts filled."""

    text: str
    finished: bool = False
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    prompt_token_ids: list[int] | None = None


def quiet_vllm_logs(verbose: bool) -> None:
    """vLLM logs at INFO by default; keep a terminal for answers unless asked (set before import)."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Engine:
    """One loaded model. Use `await Engine.start(settings)`, then `stream()`, then `shutdown()`."""

    def __init__(self, settings: RunSettings, llm: Any, start_s: float):
        self.settings = settings
        self.llm = llm
        self.start_s = start_s
        self.tokenizer = llm.get_tokenizer()

    @classmethod
    async def start(cls, settings: RunSettings) -> Engine:
        started = time.perf_counter()
        try:
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM

            llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**settings.engine_args))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            raise VlmError(
                f"cannot start the engine for profile {settings.profile_name} ({settings.model}): "
                f"{_root_cause(exc)}"
            ) from None
        return cls(settings, llm, time.perf_counter() - started)

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
                output_tokens += len(completion.token_ids)
                if not output.finished:
                    yield Delta(completion.text)
                    continue
                prompt_ids = list(output.prompt_token_ids or [])
                yield Delta(
                    completion.text,
                    finished=True,
                    prompt_tokens=len(prompt_ids),
                    output_tokens=output_tokens,
                    finish_reason=completion.finish_reason,
                    prompt_token_ids=prompt_ids,
                )
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except Exception as exc:
            if type(exc).__name__ == "EngineDeadError":
                raise VlmError(f"the engine stopped: {_root_cause(exc)}") from None
            raise RequestError(describe_request_error(exc, self.settings.max_model_len)) from None

    def shutdown(self) -> None:
        self.llm.shutdown()


def describe_request_error(exc: BaseException, max_model_len: int) -> str:
    """One line for a refused request; a too-long prompt says how to fix it."""
    message = _root_cause(exc)
    too_long = re.search(r"prompt \(length (\d+)\) is longer than the maximum model length of (\d+)", message)
    if too_long:
        length, limit = too_long.groups()
        return (
            f"the prompt is {length} tokens, longer than max_model_len {limit}: "
            "shorten the prompt, lower --max-frames or --tiles, or raise max_model_len in the profile"
        )
    if "maximum model length" in message or "max_model_len" in message:
        return f"the request does not fit max_model_len {max_model_len}: {message}"
    return message


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None and str(exc.__cause__):
        exc = exc.__cause__
    text = str(exc) or type(exc).__name__
    return one_line(text)
