"""LlamaEngine: a GGUF through llama-cpp-python's low-level API, generating for several
requests at once with continuous batching, as llama.cpp's own server does.

The KV cache is split into n_parallel slots (llama.cpp sequences), n_ctx tokens each. One
thread runs the model: at every step it puts each busy slot's next token (or the next piece
of a new prompt) into one batch, decodes it in one llama_decode, and samples each slot's next
token with that request's own sampler (its temperature, seed and grammar). A request joins
at the next step, streams its own text, stops at its own end, and a caller that gives up
(cancel) frees its slot at the next step. A slot keeps what it evaluated, so that a prompt
that starts as its last one did (every prompt of a circuit starts with the same system
prompt) evaluates only the rest; a free slot takes that start from a busy one by copying it.
With n_parallel 1 it answers as llama-cpp-python's Llama did, one request at a time, with
the same replies.

Answers come first. A background request (the distiller's, echo.memory.distill) is decoded
only while no answer is in the engine and none was for BACKGROUND_AFTER_S: an answer waiting
for a slot takes one from a background request, which keeps what it generated and goes on
later from there; while an answer generates the background slots are left out of the batch
(on a CPU, decoding them with it would slow every one of its tokens); and a step of background
work alone is kept short (BACKGROUND_STEP_TOKENS), since an answer arriving waits for it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import llama_cpp
from llama_cpp import _internals

from echo.config import CircuitConfig
from echo.llm import chat
from echo.llm.completion import Completion, KVCacheFullError, Messages, OnToken, Rate
from echo.llm.slots import Slot, pick_slot
from echo.llm.text import TextStream

log = logging.getLogger("echo.llm")

BATCH = 512  # tokens in one llama_decode, as Llama's n_batch
# While other slots generate, a new prompt is evaluated this many tokens a step, so that a long
# prompt joining holds their next token back for one short step, not for all of its tokens.
PROMPT_CHUNK_WHILE_GENERATING = 128
# llama.cpp copies a sequence into another slot's share of the cache only whole (a memory copy
# of that share, milliseconds): worth it when it spares evaluating at least this many tokens.
COPY_AT_LEAST = 32
# Background work waits this long after the last answer left the engine: the other circuits
# of the same ask, and the synthesis that follows them, are still generating on the same
# machine, and the next ask of a conversation comes soon after.
BACKGROUND_AFTER_S = 1.0
# A step with only background work decodes at most this many tokens: an answer that arrives
# waits for the step under way, and a step of a long prompt's 512 tokens takes seconds on a CPU.
BACKGROUND_STEP_TOKENS = 48


@dataclass(eq=False)
class _Request:
    prompt: list[int]
    max_tokens: int
    sampler: _internals.LlamaSampler | None
    text: TextStream
    on_token: OnToken | None
    cancel: threading.Event | None
    started: float
    done: threading.Event = field(default_factory=threading.Event)
    pieces: list[str] = field(default_factory=list)
    generated: int = 0
    finish: str = ""
    error: BaseException | None = None
    background: bool = False
    resume: list[int] | None = None  # a background request put aside: the tokens it had evaluated and the next one

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()


class LlamaEngine:
    """A GGUF model with n_parallel slots; chat() may be called from many threads at once."""

    def __init__(self, config: CircuitConfig, model_path: Path):
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's log: errors only, as Llama(verbose=False)
        llama_cpp.llama_backend_init()
        self.config = config
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0x7FFFFFFF if config.n_gpu_layers == -1 else config.n_gpu_layers  # as Llama: -1 is every layer
        self._model = _internals.LlamaModel(path_model=str(model_path), params=params, verbose=False)
        cpus = os.cpu_count() or 1
        context = _internals.LlamaContext.default_params()
        context.n_ctx = config.n_ctx * config.n_parallel
        context.n_batch = context.n_ubatch = BATCH
        context.n_seq_max = config.n_parallel
        context.kv_unified = False  # each slot its own n_ctx of the cache: a request never runs short because of another
        context.n_threads = config.n_threads or max(cpus // 2, 1)  # Llama's defaults when unset
        context.n_threads_batch = config.n_threads or cpus
        context.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as Llama's default, so that replies match it
        self._context = _internals.LlamaContext(model=self._model, params=context, verbose=False)
        self._batch = _internals.LlamaBatch(n_tokens=BATCH, embd=0, n_seq_max=1, verbose=False)
        self.n_ctx = llama_cpp.llama_n_ctx_seq(self._context.ctx)  # one slot's tokens: prompt and answer together
        self._format = chat.ChatFormat(self._model)
        # A recurrent model's state is no list of cells that can be cut and copied.
        self._copies = not (llama_cpp.llama_model_is_recurrent(self._model.model) or llama_cpp.llama_model_is_hybrid(self._model.model))
        self._seeds = random.Random(config.sampling.seed)  # no seed: one from the OS
        self._slots = [Slot(seq=i) for i in range(config.n_parallel)]
        self._waiting: deque[_Request] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._taken = 0  # slots handed out so far: which free slot was used least recently
        self._rate = Rate()
        self._prompt_evaluated = self._prompt_reused = 0
        self._answer_left = 0.0  # when the last answer (a request not in the background) ended
        self._preempted = 0
        self._thread = threading.Thread(target=self._run, name="llama-batch", daemon=True)
        self._thread.start()

    # -- what callers use ------------------------------------------------------------------

    def chat(
        self,
        messages: Messages,
        *,
        max_tokens: int | None = None,
        greedy: bool = False,
        response_format: dict | None = None,
        on_token: OnToken | None = None,
        cancel: threading.Event | None = None,
        background: bool = False,
    ) -> Completion:
        """Generate one reply; on_token sees each piece of text as it is produced (on the
        engine's thread: keep it quick). Blocks until the reply is done or cancel is set.
        A background request yields to every other (see the module's docstring)."""
        started = time.perf_counter()
        prompt = self._format.prompt(messages)
        if len(prompt.tokens) >= self.n_ctx:
            raise KVCacheFullError(
                f"the prompt has {len(prompt.tokens)} tokens and a slot holds {self.n_ctx} (n_ctx), "
                "with no room left for an answer: shorten the prompt or raise the circuit's n_ctx"
            )
        limit = min(max_tokens or self.config.max_tokens, self.n_ctx - len(prompt.tokens))  # as Llama: the answer fits the slot
        rules = chat.grammar(response_format)
        sampler = chat.sampler(self._model, self.config.sampling, greedy, self._seeds.randrange(2**32), rules)
        request = _Request(prompt.tokens, limit, sampler, TextStream(prompt.stops), on_token, cancel, started, background=background)
        with self._wake:
            if self._closed:
                raise RuntimeError("the engine is closed")
            self._waiting.append(request)
            self._wake.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return Completion(
            text="".join(request.pieces).strip(),
            prompt_tokens=len(request.prompt),
            completion_tokens=request.generated,
            latency_ms=(time.perf_counter() - started) * 1000,
            finish_reason=request.finish,
        )

    def stats(self) -> dict:
        """The slots in use, the requests waiting for one, tokens/s of all slots together over
        the last seconds, and the prompt tokens evaluated and those reused from a slot."""
        return {
            "slots": len(self._slots),
            "busy": sum(not s.free for s in self._slots),
            "queued": len(self._waiting),
            "background": sum(not s.free and s.request.background for s in self._slots) + sum(r.background for r in self._waiting),
            "background_preempted": self._preempted,
            "tokens_per_s": round(self._rate.per_s(), 1),
            "prompt_tokens_evaluated": self._prompt_evaluated,
            "prompt_tokens_reused": self._prompt_reused,
        }

    def close(self) -> None:
        """Stop the model's thread (requests not done fail) and free the model."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()
        self._context.close()
        self._model.close()

    # -- the model's thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                with self._wake:
                    while not self._closed:
                        self._admit()
                        if any(self._runs(s) for s in self._slots):
                            break
                        # Only background work is left, held back: wait until it may run, or for a new request.
                        held = any(r.background for r in self._waiting) or any(not s.free for s in self._slots)
                        self._wake.wait(max(self._held_for(), 0.01) if held else None)
                    if self._closed:
                        break
                self._step()
            except Exception as exc:  # never leave a caller waiting, never stop serving the next ones
                log.exception("a batch failed; its requests get the error")
                for slot in self._slots:
                    if not slot.free:
                        self._finish(slot, "error", exc)
                        self._forget(slot)
        closed = RuntimeError("the engine was closed")
        for slot in self._slots:
            if not slot.free:
                self._finish(slot, "error", closed)
        while self._waiting:
            self._end(self._waiting.popleft(), "error", closed)

    def _answering(self) -> bool:
        """Whether an answer (any request not in the background) is in the engine."""
        return any(not r.background for r in self._waiting) or any(not s.free and not s.request.background for s in self._slots)

    def _held_for(self) -> float:
        """Seconds background work must still wait: 0 when it may run now."""
        if self._answering():
            return BACKGROUND_AFTER_S
        return BACKGROUND_AFTER_S - (time.monotonic() - self._answer_left)

    def _runs(self, slot: Slot) -> bool:
        return not slot.free and (not slot.request.background or self._held_for() <= 0)

    def _admit(self) -> None:
        """Waiting requests into free slots, each where the most of its prompt is cached:
        answers first, taking a background request's slot when none is free; background
        requests only when they may run."""
        for request in [r for r in self._waiting if r.cancelled]:
            self._waiting.remove(request)
            self._end(request, "cancelled")
        while self._waiting:
            request = next((r for r in self._waiting if not r.background), None)
            if request is None and self._held_for() > 0:
                return
            request = request or self._waiting[0]
            tokens = request.resume or request.prompt
            slot = pick_slot(self._slots, tokens)
            if slot is None and not request.background:
                slot = self._preempt()
            if slot is None:
                return
            self._waiting.remove(request)
            slot.request = request
            self._taken += 1
            slot.last_used = self._taken
            keep = slot.reusable(tokens)
            donor = max(self._slots, key=lambda s: s.reusable(tokens))
            if self._copies and donor.reusable(tokens) >= keep + COPY_AT_LEAST:
                llama_cpp.llama_memory_seq_cp(self._context.memory, donor.seq, slot.seq, -1, -1)
                keep = donor.reusable(tokens)
            if not self._context.kv_cache_seq_rm(slot.seq, keep, -1):  # a cache that cannot drop a tail: start afresh
                self._forget(slot)
                keep = 0
            slot.cached, slot.pending = tokens[:keep], tokens[keep:]
            if request.resume is None:
                self._prompt_reused += keep
                self._prompt_evaluated += len(tokens) - keep
            request.resume = None

    def _preempt(self) -> Slot | None:
        """Free the background slot that holds the least for an answer: its request waits
        again, first of the background ones, and goes on from the tokens it had (its sampler,
        grammar included, is where it was)."""
        taken = [s for s in self._slots if not s.free and s.request.background]
        if not taken:
            return None
        slot = min(taken, key=lambda s: len(s.cached))
        request, slot.request = slot.request, None
        request.resume, slot.pending = slot.cached + slot.pending, []
        self._waiting.insert(next((i for i, r in enumerate(self._waiting) if r.background), len(self._waiting)), request)
        self._preempted += 1
        return slot

    def _step(self) -> None:
        """One llama_decode for every busy slot, then each one's next token."""
        for slot in self._slots:
            if not slot.free and slot.request.cancelled:  # the caller left: the slot is free from this step
                self._finish(slot, "cancelled")
        running = [s for s in self._slots if self._runs(s)]
        generating = [s for s in running if s.request.generated > 0]
        prompting = [s for s in running if s.request.generated == 0]
        if not generating and not prompting:
            return
        batch = self._batch.batch
        batch.n_tokens = 0
        taken: list[tuple[Slot, int]] = []  # each slot and how many of its pending tokens are in the batch
        outputs: list[tuple[Slot, int]] = []  # each slot that samples and the index of its logits
        limit = BACKGROUND_STEP_TOKENS if all(s.request.background for s in running) else BATCH
        for slot in generating + prompting:
            room = max(limit - batch.n_tokens, 1 if slot in generating else 0)
            if slot in prompting and generating:
                room = min(room, PROMPT_CHUNK_WHILE_GENERATING)
            chunk = slot.pending[:room]
            if not chunk:
                continue
            last = len(chunk) == len(slot.pending)  # the prompt's end (or a generated token): sample after it
            for i, token in enumerate(chunk):
                n = batch.n_tokens
                batch.token[n], batch.pos[n], batch.n_seq_id[n], batch.seq_id[n][0] = token, len(slot.cached) + i, 1, slot.seq
                batch.logits[n] = last and i == len(chunk) - 1
                batch.n_tokens = n + 1
            taken.append((slot, len(chunk)))
            if last:
                outputs.append((slot, batch.n_tokens - 1))
        code = llama_cpp.llama_decode(self._context.ctx, batch)
        if code != 0:
            failure = (
                KVCacheFullError("llama.cpp found no room in the KV cache for this batch: try again shortly")
                if code == 1
                else RuntimeError(f"llama_decode returned {code}")
            )
            for slot, _ in taken:
                self._finish(slot, "error", failure)
                self._forget(slot)
            return
        for slot, n in taken:
            slot.cached += slot.pending[:n]
            slot.pending = slot.pending[n:]
        for slot, index in outputs:
            self._next_token(slot, slot.request.sampler.sample(self._context, index))
        self._rate.add(len(outputs))

    def _next_token(self, slot: Slot, token: int) -> None:
        request = slot.request
        if llama_cpp.llama_vocab_is_eog(self._model.vocab, token):
            self._finish(slot, "stop")
            return
        request.generated += 1
        shown = request.text.feed(self._piece(token))
        if not request.text.stopped and request.generated >= request.max_tokens:
            shown += request.text.flush()
        try:
            if shown:
                request.pieces.append(shown)
                if request.on_token is not None:
                    request.on_token(shown)
        except Exception as exc:  # the caller's callback failed: its request ends, the others go on
            self._finish(slot, "error", exc)
            return
        if request.text.stopped:
            self._finish(slot, "stop")
        elif request.generated >= request.max_tokens:
            self._finish(slot, "length")
        else:
            slot.pending = [token]

    def _piece(self, token: int) -> bytes:
        """A token's bytes as llama-cpp-python's detokenize gives them (special tokens empty)."""
        buffer = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._model.vocab, token, buffer, len(buffer), 0, False)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._model.vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:n]

    def _finish(self, slot: Slot, reason: str, error: BaseException | None = None) -> None:
        request, slot.request, slot.pending = slot.request, None, []
        self._end(request, reason, error)

    def _end(self, request: _Request, reason: str, error: BaseException | None = None) -> None:
        request.finish, request.error, request.sampler = reason, error, None
        if not request.background:
            self._answer_left = time.monotonic()
        request.done.set()

    def _forget(self, slot: Slot) -> None:
        """Drop what a slot holds in the cache (after a failure, its contents are unknown)."""
        self._context.kv_cache_seq_rm(slot.seq, -1, -1)
        slot.cached = []
