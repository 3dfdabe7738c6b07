"""Chat completions from one model: a GGUF through llama-cpp-python (echo.llm.batched, which
generates for several requests at once), or the instant echo model. What both answer with is
in echo.llm.completion, which both import, so the room reads one way (held by import-linter).
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from echo.config import CircuitConfig
from echo.llm.completion import Completion, Messages, Rate


class EchoEngine:
    """The instant stand-in model: answers with the last user message, to measure Echo itself."""

    def __init__(self, config: CircuitConfig, model_path: Path | None = None):
        self.config = config
        self._busy = 0
        self._lock = threading.Lock()
        self._rate = Rate()

    def stats(self) -> dict:
        return {"slots": self.config.n_parallel, "busy": self._busy, "queued": 0, "tokens_per_s": round(self._rate.per_s(), 1)}

    def chat(self, messages: Messages, *, max_tokens=None, greedy=False, response_format=None, on_token=None, cancel=None, background=False) -> Completion:
        started = time.perf_counter()
        with self._lock:
            self._busy += 1
        try:
            last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
            # Each word with the whitespace after it: the reply keeps the prompt's lines (Markdown too).
            words = re.findall(r"\S+\s*", last.strip())[: max_tokens or self.config.max_tokens]
            for word in words:
                if on_token is not None:
                    on_token(word)
            self._rate.add(len(words))
        finally:
            with self._lock:
                self._busy -= 1
        prompt_tokens = sum(len(m.get("content", "").split()) for m in messages)
        return Completion(
            text="".join(words).rstrip(),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(words),
            latency_ms=(time.perf_counter() - started) * 1000,
            finish_reason="stop",
        )


def load_engine(config: CircuitConfig, model_path: Path | None):
    """The circuit's engine: the batched llama.cpp engine, or the instant echo engine."""
    if config.engine == "echo":
        return EchoEngine(config)
    assert model_path is not None
    from echo.llm.batched import LlamaEngine  # imported here so that echo/ imports without llama-cpp-python

    return LlamaEngine(config, model_path)
