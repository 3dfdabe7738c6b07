"""What the brain refuses with: AskError carries the HTTP status, a stable code and a message
that says what to do; echo.http.errors turns it into Echo's or OpenAI's error body."""

from __future__ import annotations

from typing import Any


class AskError(Exception):
    """A request Echo answers with an error: HTTP status, a stable code and a clear message."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra
        self.retry_after = retry_after  # seconds, for a 503 that may pass: sent as Retry-After

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}, **self.extra}

    def headers(self) -> dict[str, str]:
        if self.status == 401:
            return {"WWW-Authenticate": "Bearer"}
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


def describe_failure(exc: BaseException) -> str:
    """An exception as one line for a user: its type and the first line of its message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
