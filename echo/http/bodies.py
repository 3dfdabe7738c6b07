"""Request bodies read with a limit: a huge upload is refused without being held in memory."""

from __future__ import annotations

from fastapi import Request

from echo.config import EchoConfig


def ask_body_limit(config: EchoConfig) -> int:
    return config.max_prompt_chars * 4 + 65_536  # 4 bytes a character at most, plus the JSON around it


def chat_body_limit(config: EchoConfig) -> int:
    # A prompt for the brain, or a whole conversation that fills a circuit's context (16 bytes a token is generous).
    return max(ask_body_limit(config), 16 * max(c.n_ctx for c in config.circuits.values()))


# An over-limit body is still read, and thrown away, up to this many bytes before the 413 goes
# out: a server that answers and closes while the client is still sending resets the
# connection, and the client never reads why (Serve's own proxy did so for 30 MB bodies).
DRAIN_BYTES = 256 * 1024 * 1024


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it is over limit bytes (by its Content-Length, else
    counted as it arrives); an over-limit body is drained, never kept, up to DRAIN_BYTES."""
    declared = request.headers.get("content-length", "")
    body = bytearray()
    seen, over = 0, declared.isdecimal() and int(declared) > limit
    async for chunk in request.stream():
        seen += len(chunk)
        if not over:
            body += chunk
            over = len(body) > limit
            if over:
                body = bytearray()
        if over and seen > DRAIN_BYTES:
            break
    return None if over else bytes(body)
