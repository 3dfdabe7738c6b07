"""Asking circuits: one call bounded by its timeout, and the fan-out that asks every circuit
at once, whole or token by token, where a failure or a timeout leaves the others standing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from echo.brain.errors import describe_failure
from echo.llm.completion import Completion, Messages

Emit = Callable[[dict], None]  # receives the fan-out's events as they happen
EMPTY = "answered with empty text"


class Circuit(Protocol):
    async def generate(self, messages: Messages, **options: Any) -> Completion: ...

    def stream(self, messages: Messages, **options: Any) -> AsyncIterator[dict]: ...  # {"token"}..., then {"done": Completion}

    async def state(self) -> dict: ...


def timeout_reason(circuit: str, timeout: float) -> str:
    return f"no answer within {timeout:g}s (circuits.{circuit}.timeout_s)"


async def call(circuit: Circuit, name: str, messages: Messages, timeout: float, **options: Any) -> Completion:
    """One whole answer from one circuit, or TimeoutError after timeout seconds."""
    try:
        async with asyncio.timeout(timeout):
            return await circuit.generate(messages, **options)
    except TimeoutError:
        raise TimeoutError(timeout_reason(name, timeout)) from None


async def _streamed(circuit: Circuit, name: str, messages: Messages, emit: Emit) -> Completion | None:
    completion = None
    async for item in circuit.stream(messages):
        if "token" in item:
            emit({"event": "token", "circuit": name, "text": item["token"]})
        else:
            completion = item["done"]
    return completion


async def fan_out(
    circuits: Mapping[str, Circuit],
    messages: Mapping[str, Messages],
    timeouts: Mapping[str, float],
    emit: Emit | None = None,
) -> tuple[dict[str, Completion], dict[str, str]]:
    """Ask every circuit in messages at once: (answers, failures with their reasons).

    With emit, each circuit streams and emit sees "circuit_start", its "token"s and then
    "circuit_done" or "circuit_failed"; without, each answers whole. Cancelling the fan-out
    (a client gone) cancels every circuit's request."""

    async def one(name: str) -> Completion | str:
        if emit is not None:
            emit({"event": "circuit_start", "circuit": name})
        try:
            if emit is None:
                completion = await call(circuits[name], name, messages[name], timeouts[name])
            else:
                async with asyncio.timeout(timeouts[name]):
                    completion = await _streamed(circuits[name], name, messages[name], emit)
            result: Completion | str = completion if completion is not None and completion.text else EMPTY
        except TimeoutError as exc:
            result = describe_failure(exc) if str(exc) else f"TimeoutError: {timeout_reason(name, timeouts[name])}"
        except Exception as exc:
            result = describe_failure(exc)
        if emit is not None:
            done = {"event": "circuit_done", "circuit": name, "completion": result.as_dict()} if isinstance(result, Completion) else None
            emit(done or {"event": "circuit_failed", "circuit": name, "reason": result})
        return result

    names = list(messages)
    results = await asyncio.gather(*(one(n) for n in names))
    answers = {n: r for n, r in zip(names, results, strict=True) if isinstance(r, Completion)}
    failed = {n: r for n, r in zip(names, results, strict=True) if isinstance(r, str)}
    return answers, failed
