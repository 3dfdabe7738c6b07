"""MemoryActor: the single writer of memory/ and the keeper of its search index.

A named Ray actor shared by every brain replica. At start it repairs torn parts, then a
background thread replays memory/ (Ray Data at first boot, only changed parts after each
save) and embeds the turns that have no vector yet; search works from the first moment
an index exists and gets better as vectors arrive.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import ray

from actors import metrics
from core.config import EchoConfig
from core.dense import choose_embedder
from core.memory_store import append_exchange, exchange_lines, repair_torn_parts
from core.recall import MemorySearch
from core.watch import wait_for_quiet
from pipelines.replay import boot_memory_loop

log = logging.getLogger("echo.memory")

NAMESPACE = "echo"
SETTLE_S = 0.25  # a part written this recently may still be being written: it waits
UPDATE_INTERVAL_S = 0.15  # index updates take in bursts of saves together
# An index update costs a core for tens of milliseconds (a second at 300,000 lines): while
# answers are being saved one after another it waits for a pause between them, so that it
# does not slow the answers, but never longer than this, so that what was said is soon
# searchable. Parts that others drop into memory/ (no saves) are taken in at once.
MAX_DEFER_S = 1.0


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=8)
class MemoryActor:
    def __init__(self, config: dict):
        self.config = EchoConfig.model_validate(config)
        self.config.memory_dir.mkdir(parents=True, exist_ok=True)
        # A crash mid-write leaves a cut-off last line: end it, or set it aside, before writing.
        repaired = repair_torn_parts(self.config.memory_dir, self.config.quarantine_dir)
        self.repairs = list(repaired.values())
        for report in self.repairs:
            log.warning("memory repaired at start: %s", report)
        self._write = threading.Lock()  # one exchange at a time into memory/
        self._changed = threading.Event()  # memory/ has lines the index has not seen
        self._whole: dict[str, tuple[int, int]] = {}  # parts as this actor's saves (and repairs) left them
        for relative in repaired:  # just written, but whole: the first replay need not wait for them
            stat = (self.config.memory_dir / relative).stat()
            self._whole[relative] = (stat.st_size, stat.st_mtime_ns)
        self._last_save = 0.0  # time.monotonic()
        self.saving: dict = {"state": "ok"}  # the last save's outcome, for /health
        self.search_engine: MemorySearch | None = None
        self.replay_state: dict = {"state": "starting"}
        self.boot_replay: dict | None = None
        self.embedding_state: dict = {"state": "off" if self.config.recall.embedding_model == "off" else "starting"}
        threading.Thread(target=self._index_loop, name="memory-index", daemon=True).start()

    # -- writing ---------------------------------------------------------------------

    def save(self, user: str, prompt: str, reply: str) -> dict:
        self._last_save = time.monotonic()
        c = self.config
        lines = exchange_lines(prompt, reply, c.markers)
        with self._write:
            try:
                receipt = append_exchange(
                    c.memory_dir, user, lines, datetime.now(timezone.utc), c.timezone, c.part_lines, c.backup_dir, c.markers
                )
            except OSError as exc:  # a full disk, a read-only memory/: the brain marks the reply unsaved
                self.saving = {
                    "state": "failing",
                    "reason": f"{type(exc).__name__}: {exc}",
                    "fix": f"free space on, or make writable, the disk of {c.memory_dir}; replies are not saved until then",
                    "since": self.saving.get("since") or _now(),
                    "unsaved": self.saving.get("unsaved", 0) + 1,
                }
                raise
            stat = (c.memory_dir / receipt.path).stat()
            self._whole[receipt.path] = (stat.st_size, stat.st_mtime_ns)  # written and fsynced: no need to wait
            self.saving = {"state": "ok", "last_saved": receipt.path}
            if receipt.backup_error:
                self.saving["backup"] = {"state": "failing", "reason": receipt.backup_error, "fix": f"check {c.backup_dir}"}
        self._changed.set()  # the index thread takes the new lines in
        return receipt.as_dict()

    # -- the index ---------------------------------------------------------------------

    def notify(self) -> None:
        """memory/ changed on disk (the watchdog saw it): bring the index up to date."""
        self._changed.set()

    def _index_loop(self) -> None:
        c = self.config
        embedder = self._load_embedder()
        first = True
        while True:
            try:
                self.replay_state = {**self.replay_state, "state": "replaying" if first else "updating"}
                # The whole memory at first boot (only what changed since the last one), then only
                # what changed; Ray Data reads when there are many parts, this thread when few.
                insight = boot_memory_loop(
                    c.memory_dir, c.index_dir, markers=c.markers, settle_s=SETTLE_S, whole=dict(self._whole), on_read=_measure_lag
                )
                if self.search_engine is None:
                    self.search_engine = MemorySearch(c.index_dir, embedder)
                else:
                    self.search_engine.refresh()
                if first:
                    self.boot_replay = insight["last_replay"]
                self.replay_state = {
                    "state": "ready",
                    "boot": self.boot_replay,
                    "turns": insight["turns"],
                    "parts": insight["parts"],
                    "skipped": len(insight["skipped"]),
                    "pending": len(insight["pending"]),
                    "last_replay": insight["last_replay"],
                }
                _measure_replay(insight, "boot" if first else "update")
                if insight["pending"]:  # parts still being written: look again once they settle
                    threading.Timer(insight["settles_in_s"] + 0.01, self._changed.set).start()
            except Exception as exc:
                log.exception("memory replay failed")
                self.replay_state = {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            first = False
            if embedder is not None and self.search_engine is not None and not self._changed.is_set():
                # In a thread of its own at the lowest CPU priority: the background work yields
                # to the circuits answering; index updates (this thread) keep their priority.
                embedding = threading.Thread(target=self._embed, name="memory-embed", daemon=True)
                embedding.start()
                embedding.join()
            self._changed.wait()
            wait_for_quiet(lambda: self._last_save, UPDATE_INTERVAL_S, MAX_DEFER_S)
            self._changed.clear()

    def _load_embedder(self):
        embedder, state = choose_embedder(self.config.recall)
        if state:
            self.embedding_state = state
            log.warning("embeddings: %s", state.get("fallback") or state.get("reason"))
        return embedder

    def _embed(self) -> None:
        _run_when_idle()
        engine = self.search_engine
        total = len(engine.turns["hash"])
        fallback = {"fallback": self.embedding_state["fallback"]} if "fallback" in self.embedding_state else {}
        self.embedding_state = {"state": "embedding", "embedded": engine.embedded(), "turns": total, **fallback}
        try:
            # Small batches: a save or a new part interrupts within about a tenth of a second.
            engine.embed_pending(batch=4, chunk=256, stop=self._changed)
        except Exception as exc:
            log.exception("embedding failed")
            self.embedding_state = {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            return
        done = engine.embedded()
        self.embedding_state = {"state": "ready" if done >= total else "paused", "embedded": done, "turns": total, **fallback}
        metrics.memory_turns().set(done, tags={"kind": "embedded"})

    # -- reading ---------------------------------------------------------------------

    def search(self, query: str, k: int = 10, user: str | None = None, mode: str = "hybrid") -> list[dict]:
        if self.search_engine is None:
            return []
        return [m.as_dict() for m in self.search_engine.search(query, k, user, mode)]

    def insights(self) -> dict | None:
        path = self.config.index_dir / "insight.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def status(self) -> dict:
        state = self.replay_state["state"]
        return {
            "state": "ready" if state in ("ready", "updating") else state,
            "repaired_at_start": self.repairs,
            "saving": self.saving,
            "replay": self.replay_state,
            "embedding": self.embedding_state,
        }


def _run_when_idle() -> None:
    """Lower this thread (Linux: not the process) to SCHED_IDLE: it runs only on a core that
    nothing else wants. Nice 19 is not enough: Ray starts its workers at nice 15, so a nice-19
    thread would still take a third of a core from a circuit or the brain."""
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, 19)
        except (AttributeError, OSError):
            pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _measure_lag(parts: list) -> None:
    now = time.time_ns()
    for part in parts:
        metrics.ingestion_lag().observe(max(0.0, (now - part.mtime_ns) / 1e9))


def _measure_replay(insight: dict, kind: str) -> None:
    last = insight["last_replay"]
    if last["lines_read"]:
        metrics.lines_ingested().inc(last["lines_read"])
    metrics.replay_duration().observe(last["seconds"], tags={"kind": kind})
    metrics.parts_skipped().set(len(insight["skipped"]))
    metrics.memory_turns().set(insight["turns"], tags={"kind": "indexed"})


def actor_name(memory_dir: Path) -> str:
    # One writer per memory folder, so two Echo apps on one cluster never share a writer.
    return f"MemoryActor-{hashlib.sha1(str(memory_dir).encode()).hexdigest()[:8]}"


def home_resources() -> dict:
    """On a cluster whose head offers the `memory_home` resource (ray_cluster.yaml), the
    memory's actors run there, beside memory/; on one machine, anywhere."""
    return {"memory_home": 0.01} if ray.cluster_resources().get("memory_home") else {}


def memory_actor(config: EchoConfig):
    """The memory folder's writer: created on first use, then found by name."""
    return MemoryActor.options(
        name=actor_name(config.memory_dir),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_gpus=config.recall.embedding_num_gpus,  # a GGUF embedding model on the GPU needs one in sight
        resources=home_resources(),
    ).remote(config.model_dump(mode="json"))
