"""What every engine answers with and takes: messages, a completion, the error of a prompt
too long for its slot, and a tokens-per-second rate. Imports nothing else of echo.llm."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

Messages = list[dict[str, str]]
OnToken = Callable[[str], None]


class KVCacheFullError(RuntimeError):
    """A request that does not fit a slot's share of the KV cache: its prompt leaves no room
    for an answer. The brain answers it with a 503 that says so."""


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    finish_reason: str  # "stop", "length" or "cancelled"

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / (self.latency_ms / 1000) if self.latency_ms > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "tokens_per_s": round(self.tokens_per_s, 2)}


class Rate:
    """Tokens per second over the last few seconds, whatever generated them."""

    WINDOW_S = 5.0

    def __init__(self):
        self._counts: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def add(self, tokens: int) -> None:
        with self._lock:
            self._counts.append((time.monotonic(), tokens))

    def per_s(self) -> float:
        with self._lock:
            while self._counts and self._counts[0][0] < time.monotonic() - self.WINDOW_S:
                self._counts.popleft()
            return sum(n for _, n in self._counts) / self.WINDOW_S
