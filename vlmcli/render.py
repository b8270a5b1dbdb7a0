"""Output for people and for pipes: Rich on a terminal, plain text when piped, JSON Lines on request.

Answers go to stdout; errors and progress go to stderr, so `vlm describe x.mp4 > out.txt` keeps
only the answer.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from typing import IO, Any

from vlmcli.pipeline import Result


_message_stream: IO[str] | None = None


def use_message_stream(stream: IO[str] | None) -> None:
    """Send vlm's own messages (errors, progress) here instead of sys.stderr (see engine_output)."""
    global _message_stream
    _message_stream = stream


def messages() -> IO[str]:
    return _message_stream or sys.stderr


def error_line(message: str) -> None:
    """Print one error line to stderr (red on a terminal)."""
    stream = messages()
    if stream.isatty():
        from rich.console import Console
        from rich.markup import escape

        Console(file=stream).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    else:
        print(f"vlm: error: {message}", file=stream, flush=True)


def stats_line(result: Result) -> str:
    parts = [f"{result.prompt_tokens} prompt + {result.output_tokens} output tokens"]
    if result.ttft_s is not None:
        parts.append(f"first token {result.ttft_s:.2f} s")
    if result.tokens_per_s is not None:
        parts.append(f"{result.tokens_per_s:.1f} tok/s")
    if result.frames:
        parts.append(f"{result.frames} frames")
    return " · ".join(parts)


class PlainRenderer:
    """Plain text as it streams; a `==> input <==` header per answer when there are several."""

    def __init__(self, out: IO[str] | None = None, headers: bool = False):
        self.out = out or sys.stdout
        self.headers = headers
        self.first = True

    def start(self, result: Result) -> None:
        if self.headers and result.error is None:
            self.out.write(("" if self.first else "\n") + f"==> {result.to_json()['input']} <==\n")
            self.first = False

    def delta(self, result: Result, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def finish(self, result: Result) -> None:
        if result.error:
            error_line(result.error)
            return
        self.out.write("\n")
        self.out.flush()


class JsonRenderer:
    """One JSON object per input, written when that input is done (JSON Lines)."""

    def __init__(self, out: IO[str] | None = None):
        self.out = out or sys.stdout

    def start(self, result: Result) -> None:
        pass

    def delta(self, result: Result, text: str) -> None:
        pass

    def finish(self, result: Result) -> None:
        if result.error:
            error_line(result.error)
        self.out.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
        self.out.flush()


class RichRenderer:
    """Markdown that grows as the answer streams, a rule per input, and a dim stats line."""

    def __init__(self, headers: bool = False, show_stats: bool = True):
        from rich.console import Console

        self.console = Console()
        self.headers = headers
        self.show_stats = show_stats
        self.live: Any = None

    def start(self, result: Result) -> None:
        from rich.live import Live
        from rich.markdown import Markdown

        if result.error:
            return
        if self.headers:
            self.console.rule(f"[bold]{result.to_json()['input']}", align="left")
        self.live = Live(Markdown(""), console=self.console, refresh_per_second=12, vertical_overflow="visible")
        self.live.start()

    def delta(self, result: Result, text: str) -> None:
        from rich.markdown import Markdown

        self.live.update(Markdown(result.text))

    def finish(self, result: Result) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        if result.error:
            error_line(result.error)
        elif self.show_stats:
            self.console.print(stats_line(result), style="dim", highlight=False)


def make_renderer(json_output: bool, count: int) -> PlainRenderer | JsonRenderer | RichRenderer:
    """JSON when asked, Rich on a terminal, plain text otherwise."""
    if json_output:
        return JsonRenderer()
    if sys.stdout.isatty():
        return RichRenderer(headers=count > 1)
    return PlainRenderer(headers=count > 1)


@contextlib.contextmanager
def progress(message: str) -> Iterator[None]:
    """A spinner with elapsed time on a terminal's stderr; a single line otherwise (quiet when piped)."""
    stream = messages()
    if not stream.isatty():
        yield
        return
    from rich.console import Console
    from rich.live import Live
    from rich.spinner import Spinner

    console = Console(file=stream)
    started = time.perf_counter()
    # Not console.status(): it swaps sys.stderr for a proxy that prints on the terminal, and vLLM's
    # logging (configured at its import, often inside this block) would keep writing through it.
    with Live(Spinner("dots", message), console=console, transient=True, redirect_stdout=False, redirect_stderr=False):
        yield
    console.print(f"[dim]{message.rstrip('.…')} — done in {time.perf_counter() - started:.1f} s[/]", highlight=False)


class StageProgress:
    """A starting model's stage with elapsed time: a live spinner line on a terminal, one plain
    line per stage change when piped (stderr either way; stdout carries answers only)."""

    def __init__(self, title: str, stream: IO[str] | None = None):
        self.title = title
        self.stream = stream or messages()
        self.live: Any = None
        self.last_stage: str | None = None

    def __enter__(self) -> StageProgress:
        if self.stream.isatty():
            from rich.console import Console
            from rich.live import Live
            from rich.spinner import Spinner

            self.console = Console(file=self.stream)
            self.spinner = Spinner("dots", f"{self.title}…")
            # no stdout/stderr redirection: see progress() above
            self.live = Live(self.spinner, console=self.console, transient=True, redirect_stdout=False, redirect_stderr=False)
            self.live.start()
        return self

    def update(self, stage: str, elapsed_s: float) -> None:
        if self.live is not None:
            self.spinner.update(text=f"{self.title}: {stage} · {elapsed_s:.0f} s")
        elif stage != self.last_stage:
            print(f"vlm: {self.title}: {stage} ({elapsed_s:.1f} s)", file=self.stream, flush=True)
        self.last_stage = stage

    def finish(self, message: str) -> None:
        self.close()
        if self.stream.isatty():
            self.console.print(message, style="dim", highlight=False, markup=False)
        else:
            print(f"vlm: {message}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def __exit__(self, *exc: object) -> None:
        self.close()
