"""How many requests the app works on at once, and how many wait: past both, a 503 with
Retry-After in the route's error shape (OpenAI's on /v1, Echo's elsewhere), at once.

Serve's own queue limit answers in plain text, so the EchoBrain leaves its Serve queue
unbounded and this gate does the counting. `/` and `/health` are never held back: a
load balancer or a person must always be able to see how Echo is doing.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

from echo.http import errors

ALWAYS_ANSWERED = frozenset({"/", "/health"})


class Admission:
    """ASGI middleware: at most `ongoing` requests at once, `queued` more waiting in turn."""

    def __init__(self, app: ASGIApp, ongoing: int, queued: int, retry_after_s: int):
        self.app, self.queued, self.retry_after_s = app, queued, retry_after_s
        self.slots = asyncio.Semaphore(ongoing)
        self.waiting = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ALWAYS_ANSWERED:
            return await self.app(scope, receive, send)
        if self.slots.locked() and 0 <= self.queued <= self.waiting:
            return await self._busy(scope, send)
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release()

    async def _busy(self, scope: Scope, send: Send) -> None:
        if scope["path"].startswith("/v1/"):
            message = f"Echo is busy with other requests: try again in {self.retry_after_s} s"
            response = errors.openai_error(503, message, kind="server_error", code="busy", headers={"Retry-After": str(self.retry_after_s)})
        else:
            response = errors.busy(self.retry_after_s)
        await send({"type": "http.response.start", "status": 503, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})
