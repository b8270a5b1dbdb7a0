"""The `vlm chat` REPL: conversation state, slash commands, media, save/load, and two front ends.

`ChatSession` holds the conversation and handles one input line at a time; it talks to any engine
with `.chat(turns, system_prompt=..., **sampling)` (the in-process `Engine`, or a remote client)
and to a `ChatUI` for output. `run_plain` reads scripted input from a pipe; `run_terminal` is the
interactive prompt (prompt_toolkit: history, completion, multi-line, Ctrl+C stops an answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from vlmcli.errors import MediaError, RequestError, VlmError
from vlmcli.media import label, load_media, media_kind
from vlmcli.request import Turn
from vlmcli.settings import RunSettings, VideoSampling

SAVE_FORMAT = 1
TOO_LONG = "longer than max_model_len"
BLOCK = '"""'


class ChatInputError(VlmError):
    """Bad input at the chat prompt: shown as one line, and the chat goes on."""


# ---------------------------------------------------------------------------------------------
# Sampling settings (/set)

def _float_in(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("must be a number") from None
        if not (low < value <= high if low_open else low <= value <= high):
            raise ValueError(f"must be in {'(' if low_open else '['}{low:g}, {high:g}]")
        return value

    return parse


def _top_k(text: str) -> int:
    if text.lower() == "off":
        return -1
    try:
        value = int(text)
    except ValueError:
        raise ValueError("must be a whole number (-1 or off: no limit)") from None
    if value != -1 and value < 1:
        raise ValueError("must be at least 1, or -1 / off for no limit")
    return value


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise ValueError("must be on or off")


SAMPLING_KEYS: dict[str, tuple[Callable[[str], Any], str]] = {
    "temperature": (_float_in(0.0, 2.0), "0..2, 0 = greedy"),
    "top_p": (_float_in(0.0, 1.0, low_open=True), "(0, 1]"),
    "top_k": (_top_k, "-1 (off) or >= 1"),
    "max_tokens": (int, "1..max_model_len"),  # the upper bound depends on the profile
    "repetition_penalty": (_float_in(0.0, 2.0, low_open=True), "(0, 2], 1 = none"),
    "ignore_eos": (_bool, "on/off: keep generating past the end token"),
}


def parse_setting(key: str, text: str, max_model_len: int) -> Any:
    """The validated value of `/set KEY VALUE`; ChatInputError says what is allowed."""
    if key not in SAMPLING_KEYS:
        raise ChatInputError(f"/set: unknown key {key!r}; keys: {', '.join(SAMPLING_KEYS)}")
    parse, allowed = SAMPLING_KEYS[key]
    try:
        value = parse(text)
        if key == "max_tokens" and not 1 <= value <= max_model_len:
            raise ValueError(f"must be in [1, {max_model_len}]")
    except ValueError as exc:
        reason = str(exc) if "must" in str(exc) else f"must be a whole number in [1, {max_model_len}]"
        raise ChatInputError(f"/set {key}: {reason} (got {text!r})") from None
    return value


# ---------------------------------------------------------------------------------------------
# Conversation

@dataclass
class Attachment:
    """An image or video in the conversation: its reference (saved) and the loaded data (not saved)."""

    ref: str
    kind: str
    fps: float | None = None
    num_frames: int | None = None
    item: Any = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ref": self.ref, "kind": self.kind}
        if self.fps is not None:
            data["fps"] = self.fps
        if self.num_frames is not None:
            data["num_frames"] = self.num_frames
        return data


@dataclass
class Message:
    role: str  # "user" or "assistant"
    text: str
    media: list[Attachment] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "text": self.text}
        if self.media:
            data["media"] = [a.to_json() for a in self.media]
        return data


@dataclass
class Conversation:
    messages: list[Message] = field(default_factory=list)
    system: str | None = None

    def turns(self) -> list[Turn]:
        return [Turn(m.role, m.text, [a.item for a in m.media]) for m in self.messages]

    def attachments(self) -> list[Attachment]:
        return [a for m in self.messages for a in m.media]

    def undo(self) -> list[Message]:
        """Drop the last user message and everything after it (its answer); returns what went."""
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].role == "user":
                dropped = self.messages[index:]
                del self.messages[index:]
                return dropped
        return []

    def drop_oldest(self) -> bool:
        """Drop the first exchange (a user message and its answer) if another message follows it."""
        end = 1
        while end < len(self.messages) and self.messages[end].role != "user":
            end += 1
        if end >= len(self.messages):
            return False
        del self.messages[:end]
        return True

    def to_json(self, profile: str, sampling: dict[str, Any]) -> dict[str, Any]:
        return {
            "vlm_chat": SAVE_FORMAT,
            "profile": profile,
            "system": self.system,
            "sampling": dict(sorted(sampling.items())),
            "messages": [m.to_json() for m in self.messages],
        }


def conversation_from_json(data: Any) -> tuple[Conversation, dict[str, Any]]:
    """A conversation (media not loaded yet) and its sampling overrides; ValueError if malformed."""
    if not isinstance(data, dict) or data.get("vlm_chat") != SAVE_FORMAT:
        raise ValueError(f"not a vlm chat file (expected \"vlm_chat\": {SAVE_FORMAT})")
    system = data.get("system")
    if system is not None and not isinstance(system, str):
        raise ValueError("system: must be text or null")
    sampling = data.get("sampling") or {}
    if not isinstance(sampling, dict) or any(key not in SAMPLING_KEYS for key in sampling):
        raise ValueError(f"sampling: keys must be among {', '.join(SAMPLING_KEYS)}")
    messages = []
    for number, raw in enumerate(data.get("messages") or [], 1):
        if not isinstance(raw, dict) or raw.get("role") not in ("user", "assistant") or not isinstance(raw.get("text"), str):
            raise ValueError(f"message {number}: needs a role (user/assistant) and a text")
        media = []
        for item in raw.get("media") or []:
            if not isinstance(item, dict) or not isinstance(item.get("ref"), str) or item.get("kind") not in ("image", "video"):
                raise ValueError(f"message {number}: each media entry needs a ref and a kind (image/video)")
            media.append(Attachment(item["ref"], item["kind"], item.get("fps"), item.get("num_frames")))
        messages.append(Message(raw["role"], raw["text"], media))
    return Conversation(messages, system), dict(sampling)


# ---------------------------------------------------------------------------------------------
# Input parsing

@dataclass
class Command:
    name: str
    args: list[str]
    rest: str  # everything after the name, as typed (for /system TEXT)


COMMANDS: dict[str, tuple[str, str]] = {
    "help": ("/help", "show this help"),
    "image": ("/image PATH|URL ...", "attach images to your next message"),
    "video": ("/video PATH|URL [--fps F] [--num-frames N]", "attach a video to your next message"),
    "clear": ("/clear", "start a new conversation (keeps the system prompt and settings)"),
    "system": ("/system [TEXT]", "show, or set, the system prompt (/system off removes it)"),
    "set": ("/set [KEY VALUE]", "show, or change, sampling: " + ", ".join(SAMPLING_KEYS) + " (VALUE default resets)"),
    "retry": ("/retry", "regenerate the last answer"),
    "undo": ("/undo", "drop your last message and its answer (or pending attachments)"),
    "save": ("/save FILE", "save the conversation as JSON (media by path/URL)"),
    "load": ("/load FILE", "load a saved conversation (media are read again)"),
    "stats": ("/stats", "timings and token counts of the last answer"),
    "exit": ("/exit", "leave (also Ctrl+D)"),
}
ALIASES = {"quit": "exit", "q": "exit", "?": "help", "h": "help", "reset": "clear", "new": "clear"}


def parse_command(line: str) -> Command | None:
    """A slash command, or None when the line is a message (including one that starts with a path)."""
    stripped = line.strip()
    if not stripped.startswith("/"):
        return None
    head, _, rest = stripped[1:].partition(" ")
    # "/tmp/x.png what is this?" is a message that starts with a path, not a command.
    if "/" in head or "." in head or (head and Path(stripped.split()[0]).exists()):
        return None
    name = ALIASES.get(head.lower(), head.lower())
    if name not in COMMANDS:
        raise ChatInputError(f"unknown command /{head}; /help lists the commands")
    try:
        args = shlex.split(rest)
    except ValueError as exc:
        raise ChatInputError(f"/{name}: {exc}") from None
    return Command(name, args, rest.strip())


def media_paths_in(text: str) -> list[str]:
    """Existing image/video files named in a message (paths with a media suffix)."""
    found: list[str] = []
    try:
        words = shlex.split(text)
    except ValueError:  # an apostrophe in "what's this": fall back to plain words
        words = text.split()
    for word in words:
        candidate = word.strip("\"'`()[]{}<>,;:!?").rstrip(".")
        if not candidate or "://" in candidate or media_kind(candidate) is None:
            continue
        path = Path(candidate).expanduser()
        if path.is_file() and candidate not in found:
            found.append(candidate)
    return found


def unquote_block(text: str) -> str:
    """The text of a \"\"\" block, or the text as it is."""
    stripped = text.strip()
    if stripped.startswith(BLOCK):
        stripped = stripped[len(BLOCK):]
        if stripped.endswith(BLOCK):
            stripped = stripped[: -len(BLOCK)]
        return stripped.strip("\n")
    return text


def block_is_open(text: str) -> bool:
    """True while a \"\"\" block has been started but not closed."""
    stripped = text.strip()
    return stripped.startswith(BLOCK) and (len(stripped) < 2 * len(BLOCK) or not stripped.endswith(BLOCK))


def help_text(max_model_len: int) -> str:
    width = max(len(usage) for usage, _ in COMMANDS.values())
    lines = ["Type a message and press Enter. Commands:"]
    lines += [f"  {usage.ljust(width)}  {what}" for usage, what in COMMANDS.values()]
    lines += [
        "",
        "Media: pass files when starting, use /image or /video, or just name an existing image or",
        "video file in your message; they are shown to the model with your next message.",
        'Multi-line: start with """ and end with """, or press Alt+Enter (Esc then Enter) for a new line.',
        "Ctrl+C stops the answer being written (the partial answer is kept; /retry redoes it);",
        "Ctrl+D or /exit leaves. Tab completes commands and file paths. Input history is kept.",
        f"Long conversations: when the conversation no longer fits max_model_len ({max_model_len} tokens),",
        "the oldest exchanges are dropped, with a notice. If your last message alone does not fit,",
        "it is not kept (the earlier conversation stays): shorten it, or /clear.",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The session

@dataclass
class AnswerStats:
    prompt_tokens: int = 0
    output_tokens: int = 0
    ttft_s: float | None = None
    total_s: float = 0.0
    finish_reason: str | None = None
    stopped: bool = False

    @property
    def tokens_per_s(self) -> float | None:
        if self.ttft_s is None or self.output_tokens < 2 or self.total_s <= self.ttft_s:
            return None
        return (self.output_tokens - 1) / (self.total_s - self.ttft_s)

    def line(self) -> str:
        prompt = self.prompt_tokens or "?"  # a stopped answer never gets the engine's final counts
        parts = [f"{prompt} prompt + {self.output_tokens} output tokens"]
        if self.ttft_s is not None:
            parts.append(f"first token {self.ttft_s:.2f} s")
        if self.tokens_per_s is not None:
            parts.append(f"{self.tokens_per_s:.1f} tok/s")
        parts.append(f"total {self.total_s:.2f} s")
        if self.stopped:
            parts.append("stopped")
        elif self.finish_reason == "length":
            parts.append("cut at max_tokens")
        return " · ".join(parts)


class ChatUI(Protocol):
    def notice(self, text: str) -> None: ...
    def error(self, text: str) -> None: ...
    def output(self, text: str) -> None: ...
    def answer_start(self) -> None: ...
    def answer_delta(self, text: str, full: str) -> None: ...
    def answer_end(self, stats: AnswerStats, show_stats: bool, failed: bool = False) -> None: ...


class ChatEngine(Protocol):
    def chat(self, turns: list[Turn], *, system_prompt: str | None = None, **sampling: Any) -> Any: ...


MediaLoader = Callable[[str, VideoSampling, Path], Any]


class ChatSession:
    """One conversation with a loaded model; `handle(line)` returns False when the user leaves."""

    def __init__(
        self,
        engine: ChatEngine,
        settings: RunSettings,
        ui: ChatUI,
        *,
        system: str | None = None,
        show_stats: bool = False,
        loader: MediaLoader = load_media,
    ):
        self.engine = engine
        self.settings = settings
        self.ui = ui
        self.conversation = Conversation(system=system if system is not None else settings.system_prompt)
        self.sampling: dict[str, Any] = {}
        self.pending: list[Attachment] = []
        self.show_stats = show_stats
        self.last_stats: AnswerStats | None = None
        self.loader = loader
        self._answer_task: asyncio.Task | None = None

    # --- input ---

    async def handle(self, line: str) -> bool:
        """Handle one message or command; bad input is reported in one line."""
        try:
            command = parse_command(line)
            if command is None:
                await self.send(unquote_block(line))
                return True
            return await self.run_command(command)
        except ChatInputError as exc:
            self.ui.error(str(exc))
            return True

    async def send(self, text: str) -> None:
        """Add a user message (with pending and mentioned media) and answer it."""
        for path in media_paths_in(text):
            self.attach(path)
        if not text.strip() and not self.pending:
            return
        self.conversation.messages.append(Message("user", text.strip(), self.pending))
        self.pending = []
        await self.respond()

    async def run_command(self, command: Command) -> bool:
        name, args = command.name, command.args
        if name == "exit":
            return False
        if name == "help":
            self.ui.output(help_text(self.settings.max_model_len))
        elif name == "image":
            if not args:
                raise ChatInputError("/image: give a path or URL, e.g. /image photo.jpg")
            for ref in args:
                self.attach(ref, expect="image")
        elif name == "video":
            ref, fps, num_frames = parse_video_args(args)
            self.attach(ref, expect="video", fps=fps, num_frames=num_frames)
        elif name == "clear":
            self.conversation.messages.clear()
            self.pending.clear()
            self.ui.notice("new conversation")
        elif name == "system":
            self.set_system(command.rest)
        elif name == "set":
            self.set_sampling(args)
        elif name == "retry":
            await self.retry()
        elif name == "undo":
            self.undo()
        elif name == "save":
            self.save(one_arg(command, "FILE"))
        elif name == "load":
            self.load(one_arg(command, "FILE"))
        elif name == "stats":
            self.ui.output(self.last_stats.line() if self.last_stats else "no answer yet")
        return True

    def set_system(self, text: str) -> None:
        if not text:
            self.ui.output(f"system prompt: {self.conversation.system}" if self.conversation.system else "no system prompt")
        elif text.lower() in ("off", "none"):
            self.conversation.system = None
            self.ui.notice("system prompt removed")
        else:
            self.conversation.system = unquote_block(text)
            self.ui.notice("system prompt set")

    def set_sampling(self, args: list[str]) -> None:
        if not args:
            current = {**self.settings.sampling, **self.sampling}
            self.ui.output("  ".join(f"{key}={current.get(key, '-')}" for key in SAMPLING_KEYS))
            return
        if len(args) != 2:
            raise ChatInputError("/set: usage /set KEY VALUE, e.g. /set temperature 0.7 (/set alone shows them)")
        key, text = args
        if text.lower() == "default" and key in SAMPLING_KEYS:
            self.sampling.pop(key, None)
            self.ui.notice(f"{key} = {self.settings.sampling.get(key, 'default')} (profile)")
            return
        self.sampling[key] = parse_setting(key, text, self.settings.max_model_len)
        self.ui.notice(f"{key} = {self.sampling[key]}")

    def undo(self) -> None:
        if self.pending:
            self.ui.notice(f"dropped {len(self.pending)} pending attachment(s)")
            self.pending = []
            return
        dropped = self.conversation.undo()
        if not dropped:
            raise ChatInputError("/undo: nothing to undo")
        self.ui.notice(f"dropped your last message{' and its answer' if len(dropped) > 1 else ''}")

    async def retry(self) -> None:
        messages = self.conversation.messages
        if not messages:
            raise ChatInputError("/retry: nothing to retry yet")
        if messages[-1].role == "assistant":
            messages.pop()
        await self.respond()

    # --- media ---

    def attach(self, ref: str, expect: str | None = None, fps: float | None = None, num_frames: int | None = None) -> bool:
        """Load a medium and hold it for the next message; a failure is one error line."""
        kind = media_kind(ref)
        if expect and kind and kind != expect:
            self.ui.error(f"{label(ref)}: is {'an' if kind == 'image' else 'a'} {kind}; use /{kind}")
            return False
        if "://" not in ref and not ref.startswith("data:") and Path(ref).expanduser().exists():
            ref = str(Path(ref).expanduser().resolve())  # saved conversations work from any folder
        attachment = Attachment(ref, kind or expect or "image", fps, num_frames)
        try:
            self.load_attachment(attachment)
            self.check_limits(attachment)
        except MediaError as exc:
            self.ui.error(str(exc))
            return False
        self.pending.append(attachment)
        frames = f", {len(attachment.item.frame_indices)} frames" if attachment.kind == "video" else ""
        self.ui.notice(f"attached {attachment.kind} {label(ref)}{frames}")
        return True

    def load_attachment(self, attachment: Attachment) -> None:
        sampling = self.settings.video
        if attachment.fps is not None or attachment.num_frames is not None:
            sampling = VideoSampling(attachment.fps, attachment.num_frames, sampling.max_frames)
        attachment.item = self.loader(attachment.ref, sampling, self.settings.media_root)
        attachment.kind = attachment.item.kind

    def check_limits(self, attachment: Attachment) -> None:
        if attachment.kind == "video" and self.settings.family.video_placeholder is None:
            raise MediaError(f"{label(attachment.ref)}: {self.settings.family.title} takes no video")
        shown = self.conversation.attachments() + self.pending + [attachment]
        count = sum(1 for a in shown if a.kind == attachment.kind)
        limit = self.settings.max_images if attachment.kind == "image" else self.settings.max_videos
        if count > limit:
            raise MediaError(
                f"{label(attachment.ref)}: profile {self.settings.profile_name} allows {limit} {attachment.kind}(s) "
                "per conversation (media.max_images / max_videos); /undo or /clear first"
            )

    # --- save / load ---

    def save(self, path: str) -> None:
        data = self.conversation.to_json(self.settings.profile_name, self.sampling)
        target = Path(path).expanduser()
        try:
            target.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ChatInputError(f"/save: cannot write {path}: {exc.strerror or exc}") from None
        self.ui.notice(f"saved {len(self.conversation.messages)} messages to {target}")

    def load(self, path: str) -> None:
        source = Path(path).expanduser()
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
            conversation, sampling = conversation_from_json(data)
            for key, value in sampling.items():
                parse_setting(key, str(value), self.settings.max_model_len)
        except OSError as exc:
            raise ChatInputError(f"/load: cannot read {path}: {exc.strerror or exc}") from None
        except (ValueError, ChatInputError) as exc:
            raise ChatInputError(f"/load: {path}: {exc}") from None
        for message in conversation.messages:
            kept = []
            for attachment in message.media:
                try:
                    self.load_attachment(attachment)
                    kept.append(attachment)
                except MediaError as exc:
                    self.ui.error(f"{exc} (left out of the loaded conversation)")
            message.media = kept
        self.conversation, self.sampling, self.pending = conversation, sampling, []
        self.ui.notice(f"loaded {len(conversation.messages)} messages from {source}")

    # --- answers ---

    def stop(self) -> bool:
        """Stop the answer being generated (Ctrl+C); vLLM aborts the request."""
        if self._answer_task is not None and not self._answer_task.done():
            self._answer_task.cancel()
            return True
        return False

    async def respond(self) -> None:
        """Answer the conversation's last user message; trim the oldest turns when it gets too long."""
        messages = self.conversation.messages
        if not messages or messages[-1].role != "user":
            raise ChatInputError("nothing to answer: send a message first")
        original = list(messages)
        dropped = 0
        while True:
            try:
                text, stats = await self._answer()
                break
            except RequestError as exc:
                if TOO_LONG not in str(exc):
                    self.conversation.messages.pop()
                    self.ui.error(f"{exc} (your message was not kept)")
                    return
                if self.conversation.drop_oldest():
                    dropped += 1
                    continue
                self.conversation.messages[:] = original[:-1]
                length = re.search(r"\(([^)]*)\) is longer", str(exc))
                self.ui.error(
                    f"your last message alone{f' ({length[1]})' if length else ''} is longer than max_model_len "
                    f"{self.settings.max_model_len} tokens and was not kept: shorten it or attach less, or /clear to start over"
                )
                return
        if dropped:
            self.ui.notice(
                f"dropped the {dropped} oldest exchange(s) to stay within max_model_len {self.settings.max_model_len}"
            )
        self.conversation.messages.append(Message("assistant", text))
        self.last_stats = stats

    async def _answer(self) -> tuple[str, AnswerStats]:
        stats = AnswerStats()
        parts: list[str] = []
        started = time.perf_counter()

        async def stream() -> None:
            deltas = self.engine.chat(self.conversation.turns(), system_prompt=self.conversation.system, **self.sampling)
            async for delta in deltas:
                if delta.text:
                    if stats.ttft_s is None:
                        stats.ttft_s = time.perf_counter() - started
                    parts.append(delta.text)
                    self.ui.answer_delta(delta.text, "".join(parts))
                if delta.finished:
                    stats.prompt_tokens, stats.output_tokens = delta.prompt_tokens, delta.output_tokens
                    stats.finish_reason = delta.finish_reason

        self.ui.answer_start()
        # The answer runs in its own task so that stop() can cancel it without cancelling us:
        # cancelling closes the engine's generator, and vLLM aborts the request.
        self._answer_task = asyncio.ensure_future(stream())
        try:
            await asyncio.wait([self._answer_task])
        finally:
            if not self._answer_task.done():  # we ourselves were cancelled
                self._answer_task.cancel()
        task, self._answer_task = self._answer_task, None
        stats.total_s = time.perf_counter() - started
        if task.cancelled():
            stats.stopped = True
            stats.output_tokens = stats.output_tokens or len(parts)  # deltas, a close estimate
        elif task.exception() is not None:
            self.ui.answer_end(stats, False, failed=True)
            raise task.exception()
        self.ui.answer_end(stats, self.show_stats)
        return "".join(parts), stats


def parse_video_args(args: list[str]) -> tuple[str, float | None, int | None]:
    """`/video PATH [--fps F] [--num-frames N]`."""
    usage = "/video: usage /video PATH|URL [--fps F] [--num-frames N]"
    ref, fps, num_frames = None, None, None
    rest = list(args)
    while rest:
        word = rest.pop(0)
        if word in ("--fps", "--num-frames"):
            if not rest:
                raise ChatInputError(f"/video: {word} needs a value")
            value = rest.pop(0)
            try:
                if word == "--fps":
                    fps = float(value)
                    if not fps > 0:
                        raise ValueError
                else:
                    num_frames = int(value)
                    if num_frames < 1:
                        raise ValueError
            except ValueError:
                kind = "a number > 0" if word == "--fps" else "a whole number >= 1"
                raise ChatInputError(f"/video: {word} must be {kind} (got {value!r})") from None
        elif word.startswith("--"):
            raise ChatInputError(f"/video: unknown option {word}; {usage[8:]}")
        elif ref is None:
            ref = word
        else:
            raise ChatInputError(f"{usage} (one video at a time)")
    if ref is None:
        raise ChatInputError(usage)
    return ref, fps, num_frames


def one_arg(command: Command, what: str) -> str:
    if len(command.args) != 1:
        raise ChatInputError(f"/{command.name}: usage /{command.name} {what}")
    return command.args[0]


# ---------------------------------------------------------------------------------------------
# Front ends

class PlainUI:
    """For pipes and scripts: answers as plain text on stdout, one block per answer, then a blank
    line; notices and errors on stderr (so stdout holds only answers and asked-for output)."""

    def __init__(self, out: IO[str] | None = None, messages: IO[str] | None = None):
        self.out = out or sys.stdout
        self._messages = messages

    @property
    def messages(self) -> IO[str]:
        from vlmcli.render import messages

        return self._messages or messages()

    def notice(self, text: str) -> None:
        print(f"vlm: {text}", file=self.messages, flush=True)

    def error(self, text: str) -> None:
        from vlmcli.render import error_line

        if self._messages is not None:
            print(f"vlm: error: {text}", file=self._messages, flush=True)
        else:
            error_line(text)

    def output(self, text: str) -> None:
        self.out.write(text + "\n\n")
        self.out.flush()

    def answer_start(self) -> None:
        self.written = False

    def answer_delta(self, text: str, full: str) -> None:
        self.written = True
        self.out.write(text)
        self.out.flush()

    def answer_end(self, stats: AnswerStats, show_stats: bool, failed: bool = False) -> None:
        if failed and not self.written:  # a refused request prints no empty answer block
            return
        self.out.write("\n\n")
        self.out.flush()
        if stats.stopped:
            self.notice("stopped")
        if show_stats:
            self.notice(f"stats: {stats.line()}")


class RichUI:
    """For a terminal: Markdown that grows as the answer streams, dim notices."""

    def __init__(self) -> None:
        from rich.console import Console

        from vlmcli.render import messages

        self.console = Console()
        self.message_console = Console(file=messages())
        self.live: Any = None

    def notice(self, text: str) -> None:
        self.message_console.print(text, style="dim", highlight=False, markup=False)

    def error(self, text: str) -> None:
        from vlmcli.render import error_line

        error_line(text)

    def output(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)

    def answer_start(self) -> None:
        from rich.live import Live
        from rich.markdown import Markdown

        # No redirection of sys.stderr into the display: vLLM's log lines must stay in its log file.
        self.live = Live(
            Markdown(""), console=self.console, refresh_per_second=12, vertical_overflow="visible",
            redirect_stdout=False, redirect_stderr=False,
        )
        self.live.start()

    def answer_delta(self, text: str, full: str) -> None:
        from rich.markdown import Markdown

        self.live.update(Markdown(full))

    def answer_end(self, stats: AnswerStats, show_stats: bool, failed: bool = False) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        if stats.stopped:
            self.console.print("[stopped]", style="yellow", highlight=False, markup=False)
        if show_stats:
            self.console.print(stats.line(), style="dim", highlight=False)


def read_blocks(lines: Iterator[str]) -> Iterator[str]:
    """Input lines joined into messages: a \"\"\" block spans lines until the closing \"\"\"."""
    block: list[str] | None = None
    for raw in lines:
        line = raw.rstrip("\n")
        if block is not None:
            block.append(line)
            if line.rstrip().endswith(BLOCK):
                yield "\n".join(block)
                block = None
            continue
        if block_is_open(line):
            block = [line]
            continue
        yield line
    if block is not None:
        yield "\n".join(block) + BLOCK  # input ended inside a block: send what there is


async def run_plain(session: ChatSession, stdin: IO[str] | None = None) -> None:
    """Scripted chat: one message or command per line (or per \"\"\" block) until end of input."""
    stdin = stdin or sys.stdin
    loop = asyncio.get_running_loop()
    lines = iter(lambda: stdin.readline(), "")
    blocks = read_blocks(lines)
    while True:
        # Read in a thread so that vLLM's output handler keeps running between messages.
        line = await loop.run_in_executor(None, next, blocks, None)
        if line is None or not await session.handle(line):
            return


def data_dir() -> Path:
    """Where vlm keeps user data such as the chat history ($VLM_DATA_DIR, else the platform's)."""
    configured = os.environ.get("VLM_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "vlm"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "vlm"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "vlm"


def history_path() -> Path:
    return data_dir() / "chat_history"


def make_completer() -> Any:
    """Tab completion: slash commands at the start of a line, file paths in any path-like word."""
    from prompt_toolkit.completion import Completer, Completion, PathCompleter
    from prompt_toolkit.document import Document

    paths = PathCompleter(expanduser=True)

    class ChatCompleter(Completer):
        def get_completions(self, document: Document, complete_event: Any):
            before = document.text_before_cursor
            if before.startswith("/") and " " not in before and "/" not in before[1:]:
                for name in COMMANDS:
                    if name.startswith(before[1:].lower()):
                        yield Completion("/" + name, start_position=-len(before), display_meta=COMMANDS[name][1])
                return
            word = document.get_word_before_cursor(WORD=True)
            command = before.split(" ", 1)[0].lstrip("/") if before.startswith("/") else ""
            if word and ("/" in word or word.startswith(("~", "."))) or command in ("image", "video", "save", "load"):
                yield from paths.get_completions(Document(word, len(word)), complete_event)

    return ChatCompleter()


def make_key_bindings() -> Any:
    """Enter sends, except inside an open \"\"\" block; Alt+Enter (Esc, Enter) always adds a line."""
    from prompt_toolkit.filters import Condition
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @Condition
    def in_block() -> bool:
        from prompt_toolkit.application import get_app

        return block_is_open(get_app().current_buffer.text)

    @bindings.add("enter", filter=in_block)
    def _(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    @bindings.add("escape", "enter")
    def _(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    return bindings


@contextlib.contextmanager
def ctrl_c_stops(session: ChatSession, fd: int) -> Iterator[None]:
    """While an answer is generated, Ctrl+C stops it instead of raising SIGINT.

    A terminal's Ctrl+C signals the whole foreground process group, which includes vLLM's engine
    processes, and they shut down on SIGINT. So the terminal stops making signals (ISIG off) and the
    key is read as a byte; typed characters are not echoed over the streaming answer.
    """
    import termios

    loop = asyncio.get_running_loop()
    saved = termios.tcgetattr(fd)
    quiet = termios.tcgetattr(fd)
    quiet[3] &= ~(termios.ISIG | termios.ICANON | termios.ECHO)
    termios.tcsetattr(fd, termios.TCSANOW, quiet)

    def on_key() -> None:
        try:
            data = os.read(fd, 1024)
        except OSError:
            return
        if b"\x03" in data:
            session.stop()

    loop.add_reader(fd, on_key)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSANOW, saved)


@contextlib.contextmanager
def no_terminal_signals(fd: int) -> Iterator[None]:
    """Keep Ctrl+C from signalling vLLM's engine processes for the whole chat (see ctrl_c_stops)."""
    import termios

    saved = termios.tcgetattr(fd)
    quiet = termios.tcgetattr(fd)
    quiet[3] &= ~termios.ISIG
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


async def run_terminal(session: ChatSession) -> None:
    """Interactive chat with history, completion and multi-line input."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    try:
        history_file = history_path()
        history_file.parent.mkdir(parents=True, exist_ok=True)
        history: Any = FileHistory(str(history_file))
    except OSError as exc:
        session.ui.notice(f"input history not kept ({exc.strerror or exc})")
        history = InMemoryHistory()
    prompt = PromptSession(
        history=history,
        completer=make_completer(),
        complete_while_typing=False,
        key_bindings=make_key_bindings(),
        prompt_continuation="... ",
    )
    session.ui.notice("Chat with the model. /help lists commands; Ctrl+C stops an answer, Ctrl+D leaves.")
    fd = sys.stdin.fileno()
    with no_terminal_signals(fd):
        while True:
            attached = f"[{len(session.pending)} attached] " if session.pending else ""
            try:
                line = await prompt.prompt_async(f"{attached}>>> ")
            except KeyboardInterrupt:  # Ctrl+C at the prompt clears the line
                continue
            except EOFError:  # Ctrl+D
                return
            with ctrl_c_stops(session, fd):
                if not await session.handle(line):
                    return
