"""Errors the user can act on. Each one is printed as a single line; none ends in a traceback."""

from __future__ import annotations


class VlmError(Exception):
    """A problem with the user's input or environment, with a message that says what to do."""

    exit_code = 1


class UsageError(VlmError):
    """Bad flags or arguments (exit code 2, as for Typer's own usage errors)."""

    exit_code = 2


class ProfileError(VlmError):
    """A profile that cannot be found or is invalid (names the file, the key and what is allowed)."""

    exit_code = 2


class MediaError(VlmError):
    """An image or video that cannot be used: missing, unreadable, corrupt, unsupported, forbidden."""


class RequestError(VlmError):
    """The engine refused one request (e.g. the prompt is longer than `max_model_len`)."""


def one_line(text: str, limit: int = 400) -> str:
    """Squash a possibly multi-line message (e.g. from vLLM) into one readable line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
