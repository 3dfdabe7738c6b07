"""Request bodies read with a limit: a huge upload is refused without being held in memory."""

from __future__ import annotations

from fastapi import Request

from echo.config import EchoConfig


def ask_body_limit(config: EchoConfig) -> int:
    return config.max_prompt_chars * 4 + 65_536  # 4 bytes a character at most, plus the JSON around it


def chat_body_limit(config: EchoConfig) -> int:
    # A prompt for the brain, or a whole conversation that fills a circuit's context (16 bytes a token is generous).
    return max(ask_body_limit(config), 16 * max(c.n_ctx for c in config.circuits.values()))


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is over limit bytes (by its Content-Length,
    else counted as it arrives)."""
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
