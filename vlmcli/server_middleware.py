"""HTTP middleware that `vlm serve` adds to vLLM's own server (through vLLM's --middleware option).

Loaded inside the server process; keep it free of heavy imports.
"""

from __future__ import annotations

import json

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
