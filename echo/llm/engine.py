"""Chat completions from one model: a GGUF through llama-cpp-python, or the instant echo model.

An engine runs one generation at a time (a llama.cpp context is not re-entrant); callers
scale with more replicas, not more threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from echo.config import CircuitConfig

Messages = list[dict[str, str]]
OnToken = Callable[[str], None]


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


class LlamaEngine:
    """A GGUF model loaded with llama-cpp-python, serialized by a lock."""

    def __init__(self, config: CircuitConfig, model_path: Path):
        from llama_cpp import Llama  # imported here so that echo/ imports without the build

        self.config = config
        self._lock = threading.Lock()
        self._llama = Llama(
            model_path=str(model_path),
            n_ctx=config.n_ctx,
            n_gpu_layers=config.n_gpu_layers,
            n_threads=config.n_threads,
            n_threads_batch=config.n_threads,
            seed=config.sampling.seed if config.sampling.seed is not None else 0xFFFFFFFF,
            verbose=False,
        )

    def chat(
        self,
        messages: Messages,
        *,
        max_tokens: int | None = None,
        greedy: bool = False,
        response_format: dict | None = None,
        on_token: OnToken | None = None,
        cancel: threading.Event | None = None,
    ) -> Completion:
        """Generate one reply; on_token sees each piece of text as it is produced."""
        sampling = self.config.sampling
        with self._lock:
            started = time.perf_counter()
            chunks = self._llama.create_chat_completion(
                messages=messages,
                max_tokens=max_tokens or self.config.max_tokens,
                temperature=0.0 if greedy else sampling.temperature,
                top_p=1.0 if greedy else sampling.top_p,
                top_k=1 if greedy else sampling.top_k,
                repeat_penalty=sampling.repeat_penalty,
                response_format=response_format,
                stream=True,
            )
            pieces: list[str] = []
            finish = "stop"
            for chunk in chunks:
                if cancel is not None and cancel.is_set():
                    chunks.close()  # stops llama.cpp between two tokens: the caller gave up
                    break
                choice = chunk["choices"][0]
                piece = choice["delta"].get("content") or ""
                if piece:
                    pieces.append(piece)
                    if on_token is not None:
                        on_token(piece)
                finish = choice.get("finish_reason") or finish
            latency = (time.perf_counter() - started) * 1000
            text = "".join(pieces)
            # Streamed chunks carry no usage. A reply cut at max_tokens has exactly that many;
            # otherwise re-tokenizing the text counts them (exact to within a token: pieces of
            # Korean can merge differently), and the context's length less that is the prompt.
            limit = max_tokens or self.config.max_tokens
            retokenized = len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0
            completion_tokens = limit if finish == "length" else min(retokenized, limit)
            prompt_tokens = max(0, self._llama.n_tokens - completion_tokens)
        if cancel is not None and cancel.is_set():
            finish = "cancelled"
        return Completion(
            text=text.strip(),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency,
            finish_reason=finish,
        )


class EchoEngine:
    """The instant stand-in model: answers with the last user message, to measure Echo itself."""

    def __init__(self, config: CircuitConfig, model_path: Path | None = None):
        self.config = config

    def chat(self, messages: Messages, *, max_tokens=None, greedy=False, response_format=None, on_token=None, cancel=None) -> Completion:
        started = time.perf_counter()
        last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        words = last.split()[: max_tokens or self.config.max_tokens]
        for word in words:
            if on_token is not None:
                on_token(word + " ")
        prompt_tokens = sum(len(m.get("content", "").split()) for m in messages)
        return Completion(
            text=" ".join(words),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(words),
            latency_ms=(time.perf_counter() - started) * 1000,
            finish_reason="stop",
        )


def load_engine(config: CircuitConfig, model_path: Path | None) -> LlamaEngine | EchoEngine:
    if config.engine == "echo":
        return EchoEngine(config)
    assert model_path is not None
    return LlamaEngine(config, model_path)
