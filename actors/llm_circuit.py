"""LLMCircuit: one Serve deployment class, bound three times (emotion, creation, self)."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ray import serve

from actors import metrics
from echo.config import CircuitConfig
from echo.llm.completion import Completion, Messages
from echo.llm.engine import load_engine
from echo.llm.models import resolve_model_path

log = logging.getLogger("ray.serve")

# Requests a replica takes past its slots (Serve's max_ongoing_requests is n_parallel plus
# these): they wait inside for a slot, shown as queued in /health, and join the batch at the
# step one frees; and /health's state() still gets through while every slot generates.
WAITING_INSIDE = 8


@serve.deployment
class LLMCircuit:
    def __init__(self, name: str, config: dict, model_path: str | None):
        self.name = name
        self.config = CircuitConfig.model_validate(config)
        self.model_path = Path(model_path) if model_path else None
        self._state, self._reason, self._engine = "loading", None, None
        self._loaded = asyncio.Event()
        # engine.chat blocks until its reply is done: a thread for every request the replica holds.
        self._threads = ThreadPoolExecutor(max_workers=self.config.n_parallel + WAITING_INSIDE, thread_name_prefix=f"chat-{name}")
        # Load in the background so the replica (and with it the HTTP port) is up at once;
        # /health shows "loading" until the model is in memory.
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._load, args=(loop,), name=f"load-{name}", daemon=True).start()
        self._reporter = loop.create_task(self._report())

    def _load(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            if self.model_path is None and self.config.engine == "llama":  # not looked for where the app was built
                self.model_path = resolve_model_path(self.name, self.config.model)
            self._engine = load_engine(self.config, self.model_path)
            self._state = "ready"
            log.info("circuit %s ready (%s)", self.name, self.model_path.name if self.model_path else "echo model")
        except Exception as exc:  # kept for /health instead of crash-looping the replica
            self._state, self._reason = "failed", f"{type(exc).__name__}: {exc}"
            log.error("circuit %s failed to load %s: %s", self.name, self.model_path, self._reason)
        loop.call_soon_threadsafe(self._loaded.set)

    async def _ready_engine(self):
        await self._loaded.wait()
        if self._engine is None:
            raise RuntimeError(f"circuit {self.name} could not load its model: {self._reason}")
        return self._engine

    async def state(self) -> dict:
        return {
            "state": self._state,
            "reason": self._reason,
            "model": self.model_path.name if self.model_path else self.config.engine,
            "replica": serve.get_replica_context().replica_id.unique_id,
            # The slots (n_parallel) generating, requests waiting for one, tokens/s of all together.
            "load": self._engine.stats() if self._engine is not None else None,
        }

    async def _report(self) -> None:
        """The engine's load as gauges, every second (Ray exports them to Prometheus)."""
        replica = serve.get_replica_context().replica_id.unique_id
        while True:
            await asyncio.sleep(1)
            if self._engine is not None:
                load, tags = self._engine.stats(), {"circuit": self.name, "replica": replica}
                metrics.circuit_slots_busy().set(load["busy"], tags=tags)
                metrics.circuit_queued().set(load["queued"], tags=tags)
                metrics.circuit_tokens_per_second().set(load["tokens_per_s"], tags=tags)

    async def generate(self, messages: Messages, **options: Any) -> Completion:
        """A whole chat completion; cancelling the request stops the model between tokens."""
        engine = await self._ready_engine()
        cancel = threading.Event()
        try:
            completion = await self._chat(engine, messages, cancel=cancel, **options)
        except asyncio.CancelledError:
            cancel.set()  # its slot is free at the engine's next step
            raise
        self._measure(completion)
        return completion

    def _chat(self, engine, messages: Messages, **options: Any) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self._threads, functools.partial(engine.chat, messages, **options))

    def _measure(self, completion: Completion) -> None:
        metrics.circuit_latency().observe(completion.latency_ms / 1000, tags={"circuit": self.name})

    async def stream(self, messages: Messages, **options: Any) -> AsyncIterator[dict]:
        """The completion token by token: {"token": text} events, then {"done": completion}."""
        engine = await self._ready_engine()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        work = asyncio.ensure_future(
            self._chat(engine, messages, on_token=lambda piece: loop.call_soon_threadsafe(queue.put_nowait, piece), cancel=cancel, **options)
        )
        work.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (piece := await queue.get()) is not None:
                yield {"token": piece}
            self._measure(work.result())
            yield {"done": work.result()}
        finally:
            if not work.done():
                cancel.set()
                await asyncio.shield(work)  # the request ends once its slot is free
