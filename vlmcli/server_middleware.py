"""HTTP middleware that `vlm serve` adds to vLLM's own server (through vLLM's --middleware option).

Loaded inside the server process; keep it free of heavy imports.
"""

from __future__ import annotations

import json
import os
import time

MISSING_FILE_MARKERS = (b"No such file or directory", b"FileNotFoundError")


async def missing_media_is_a_client_error(request, call_next):
    """A request naming a local file that does not exist is the client's mistake: answer 404, not
    vLLM's 500 (its media loader's FileNotFoundError is not mapped to a client error)."""
    from starlette.responses import JSONResponse, Response

    def not_found(message: str) -> Response:
        error = {"message": message, "type": "NotFoundError", "param": None, "code": 404}
        return JSONResponse({"error": error}, status_code=404)

    try:
        response = await call_next(request)
    except FileNotFoundError as exc:  # raised through to the app's outermost error handler otherwise
        return not_found(f"no such file: {exc.filename or exc}")
    if response.status_code != 500 or not request.url.path.startswith("/v1/"):
        return response
    body = b"".join([chunk async for chunk in response.body_iterator])
    if not any(marker in body for marker in MISSING_FILE_MARKERS):
        return Response(content=body, status_code=500, headers=dict(response.headers))
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace")
    return not_found(message)


# --- activity of a background server (vlmcli.keepalive) ------------------------------------------

ACTIVITY_ENV = "VLM_ACTIVITY_FILE"
# Probes (the supervisor's /health, `vlm ps`, /metrics scrapes) are no use of the model.
NOT_USE = ("/health", "/metrics", "/ping", "/version", "/load")
_in_flight = 0
_last_request_at = 0.0


def _publish(path: str) -> None:
    """Write 'IN_FLIGHT LAST_REQUEST_TIME' atomically, for the supervisor's idle check."""
    temporary = f"{path}.tmp"
    try:
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write(f"{_in_flight} {_last_request_at}\n")
        os.replace(temporary, path)
    except OSError:  # the supervisor removed its folder while stopping: nothing to report to
        pass


class TrackActivity:
    """Count requests in flight and note when the last one ended, in $VLM_ACTIVITY_FILE.

    Plain ASGI rather than an `@app.middleware("http")` function: the wrapped call returns only when
    the whole answer, streamed or not, has been sent, and a disconnect cancels it, so the count is
    decremented in every case. A request refused for a wrong key (401) does not reset the keep-alive
    clock.
    """

    def __init__(self, app):
        self.app = app
        self.path = os.environ.get(ACTIVITY_ENV)

    async def __call__(self, scope, receive, send):
        global _in_flight, _last_request_at

        if not self.path or scope["type"] != "http" or scope["path"].startswith(NOT_USE):
            return await self.app(scope, receive, send)
        status = None

        async def noting_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        _in_flight += 1
        _publish(self.path)
        try:
            await self.app(scope, receive, noting_status)
        finally:
            _in_flight -= 1
            if status != 401:
                _last_request_at = time.time()
            _publish(self.path)
