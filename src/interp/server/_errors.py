"""OpenAI's error JSON, with the status the ``openai`` SDK maps to its exception classes."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse
from starlette.types import Send


class APIError(Exception):
    """An error answered as ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
        retry_now: bool = True,
    ) -> None:
        super().__init__(message)
        self.headers: dict[str, str] | None = None
        """A 429's ``Retry-After``: when a client (the openai SDK does) may try again; and,
        for what waiting alone will not mend, ``x-should-retry: false``, which tells the
        SDK to raise at once rather than retry."""
        if retry_after is not None:
            self.headers = {"retry-after": str(retry_after)}
            if not retry_now:
                self.headers["x-should-retry"] = "false"
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def not_found(kind: str, object_id: str) -> APIError:
    shown = object_id if len(object_id) <= 64 else object_id[:64] + "…"
    return APIError(404, f"No {kind} found with id '{shown}'.", code="not_found")


def file_not_found(file_id: str, *, param: str) -> APIError:
    """A file id in a request body that names none of the caller's files."""
    shown = file_id if len(file_id) <= 64 else file_id[:64] + "…"
    return APIError(404, f"No file found with id '{shown}'.", param=param)


def bad_request(message: str, *, param: str | None = None) -> APIError:
    return APIError(400, message, param=param)


async def send_error(send: Send, error: APIError) -> None:
    """Answer with ``error`` from below the app (a middleware), as the app would."""
    response = JSONResponse(error.body(), status_code=error.status, headers=error.headers)
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": response.body})
