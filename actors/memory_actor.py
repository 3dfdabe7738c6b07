"""MemoryActor: the single writer of memory/ and the keeper of its search index.

A named Ray actor shared by every brain replica. At start it repairs torn parts, then a
background thread replays memory/ (Ray Data at first boot, only changed parts after each
save) and embeds the turns that have no vector yet; search works from the first moment
an index exists and gets better as vectors arrive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import ray

from actors import metrics
from echo.config import MEMORY_HOME, EchoConfig
from echo.llm.completion import KVCacheFullError
from echo.memory.conversation import ConversationIndex, Exchange, RecentConversations, Said, title_of
from echo.memory.dates import parse_bound
from echo.memory.dense import choose_embedder
from echo.memory.distill import CircuitUnavailable, DistillBusy, Distiller, WindowTooLong, distilling_lock
from echo.memory.facts import CHANGING, FactDesk, FactStore
from echo.memory.parsing import parse_part, stamp_line
from echo.memory.scheduler import IndexScheduler
from echo.memory.search import MemorySearch
from echo.memory.store import append_exchange, exchange_lines, repair_torn_parts, scan_parts
from echo.memory.watch import changed_by_others
from pipelines.ray_data_replay import ray_data_replayer

log = logging.getLogger("echo.memory")

NAMESPACE = "echo"
SKIPPED_SHOWN = 20  # entries of memory/ that are not read, named in /health (insight.json has every one)
SETTLE_S = 0.25  # a part written this recently may still be being written: it waits
DISTILL_RECHECK_S = 60.0  # how often the distiller looks again for a conversation gone quiet
CONVERSATIONS_READY_S = 2.0  # a prompt waits this long at most for the conversation list read at start


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=8)
class MemoryActor:
    def __init__(self, config: dict, distill_target: tuple[str, str] | None = None):
        self.config = EchoConfig.model_validate(config)
        self.config.memory_dir.mkdir(parents=True, exist_ok=True)
        # A crash mid-write leaves a cut-off last line: end it, or set it aside, before writing.
        repaired = repair_torn_parts(self.config.memory_dir, self.config.quarantine_dir)
        self.repairs = list(repaired.values())
        for report in self.repairs:
            log.warning("memory repaired at start: %s", report)
        self._write = threading.Lock()  # one exchange at a time into memory/
        self._whole: dict[str, tuple[int, int]] = {}  # parts as this actor's saves (and repairs) left them
        for relative in repaired:  # just written, but whole: the first replay need not wait for them
            stat = (self.config.memory_dir / relative).stat()
            self._whole[relative] = (stat.st_size, stat.st_mtime_ns)
        self.saving: dict = {"state": "ok"}  # the last save's outcome, for /health
        self.search_engine: MemorySearch | None = None
        self.replayer = None  # made by the index thread, which alone uses it
        self.replay_state: dict = {"state": "starting"}
        self.boot_replay: dict | None = None
        self.insight: dict | None = None  # the last update's, once search has it
        self.embedding_state: dict = {"state": "off" if self.config.recall.embedding_model == "off" else "starting"}
        self.conversations = RecentConversations()
        self.conversation_index = ConversationIndex(self.config.memory_dir, self.config.markers)
        self.fact_store = FactStore(self.config.facts_dir, self.config.backup_dir / "facts", self.config.facts.undo_minutes)
        self.fact_desk = FactDesk(self.fact_store, self.config.memory_dir, self.config.timezone)
        self.embedder = None
        self._watchdog = None  # found by name at the first save
        self.index = IndexScheduler(self._update_index, self._embed)
        threading.Thread(target=self._index_thread, name="memory-index", daemon=True).start()
        # The distiller: after the boot replay, and again after every update of the index.
        self.distill_state: dict = {
            "state": "off",
            "reason": "distill.enabled is false" if not self.config.distill.enabled else "no circuit to distill with yet",
        }
        self._distill_wake = threading.Event()
        self._distilling: tuple[str, str] | None = None
        self._distill_start = threading.Lock()
        if distill_target is not None:
            self.distill_with(distill_target)

    # -- writing ---------------------------------------------------------------------

    def save(self, user: str, prompt: str, reply: str, conversation: str | None = None) -> dict:
        """Append one exchange to user's part of today, stamped with the time and conversation
        (its key); the receipt says where."""
        c = self.config
        now = datetime.now(ZoneInfo(c.timezone))
        at = now.isoformat(timespec="seconds")
        lines = exchange_lines(prompt, reply, c.markers, stamp_line(at, conversation) if conversation else None)
        with self._write:
            try:
                receipt = append_exchange(c.memory_dir, user, lines, now, c.timezone, c.part_lines, c.backup_dir, c.markers)
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
            self._tell_watchdog(receipt.path, stat)
            self.saving = {"state": "ok", "last_saved": receipt.path}
            if receipt.backup_error:
                self.saving["backup"] = {"state": "failing", "reason": receipt.backup_error, "fix": f"check {c.backup_dir}"}
        said = {t.speaker: t.text for t in parse_part(lines, c.markers)}  # cleaned, as reading the file back gives them
        if conversation and not receipt.duplicate and {"user", "echo"} <= said.keys():
            self.conversations.add(user, conversation, Exchange(said["user"], said["echo"], at, receipt.path, receipt.line_start, receipt.line_end))
            self.conversation_index.saved(user, receipt.path, Said(conversation, at, title_of(said["user"]), receipt.line_start))
        self.index.saved(receipt.path)  # the index thread takes the new lines in
        return receipt.as_dict()

    def conversation(self, user: str, key: str, last: int) -> list[Exchange]:
        """The last exchanges of conversation key, oldest first: from what this actor saved
        since it started, else read back from the parts the conversation list names."""
        if not self.conversation_index.ready.wait(CONVERSATIONS_READY_S):
            return []  # still reading the list at start: this prompt goes on without its past
        return self.conversations.get(user, key, lambda: self._read_back(user, key), last)

    def _read_back(self, user: str, key: str) -> list[Exchange]:
        found = self.conversation_index.find(key, user)
        return self.conversation_index.exchanges(found[0]) if found else []

    def conversation_list(self, user: str | None, limit: int, offset: int) -> dict | None:
        """One page of user's conversations (everyone's for None), newest first; None while
        the list is still being read at start."""
        if not self.conversation_index.ready.wait(CONVERSATIONS_READY_S):
            return None
        total, page = self.conversation_index.listing(user, limit, offset)
        return {"total": total, "conversations": [c.as_dict() for c in page]}

    def conversation_read(self, key: str, user: str | None) -> dict | None:
        """The conversations with key (user's, or anyone's for None) and, when there is one,
        its exchanges read back from memory/, oldest first; None while the list is being read."""
        if not self.conversation_index.ready.wait(CONVERSATIONS_READY_S):
            return None
        found = self.conversation_index.find(key, user)
        exchanges = self.conversation_index.exchanges(found[0]) if len(found) == 1 else []
        return {"found": [c.as_dict() for c in found], "exchanges": [e.as_dict() for e in exchanges]}

    # -- the index ---------------------------------------------------------------------

    def _tell_watchdog(self, path: str, stat: os.stat_result) -> None:
        """The watchdog sees this save's file events too: told that they are Echo's own, it
        does not nudge this actor back (the index thread already knows)."""
        try:
            if self._watchdog is None:
                self._watchdog = ray.get_actor(watchdog_name(self.config.memory_dir), namespace=NAMESPACE)
            self._watchdog.expect.remote(path, stat.st_size, stat.st_mtime_ns)  # not awaited: the save goes on
        except Exception:  # not started yet, or restarting: it nudges, which is only redundant
            self._watchdog = None

    def notify(self, paths: list[str] | None = None) -> None:
        """memory/ changed on disk (the watchdog saw it, at these absolute paths when it says):
        bring the index up to date."""
        root = self.config.memory_dir.resolve()
        resolved = [Path(p).resolve() for p in paths or ()]
        relative = [p.relative_to(root).as_posix() for p in resolved if p.is_relative_to(root)]
        self.index.notify(relative if paths is not None and len(relative) == len(paths) else None)

    def written_by_me(self, paths: list[str]) -> bool:
        """Whether every changed path (absolute, as the watchdog saw it) is as this actor's own
        saves left it: the writer knows for sure, even before its word reaches the watchdog."""
        return not changed_by_others(paths, self.config.memory_dir, dict(self._whole))

    def _update_index(self, first: bool, paths: set[str] | None) -> float | None:
        """One replay of what changed (the whole memory at first boot), looking only at paths
        when they are known: Ray Data reads when there are many parts, this thread when few.
        Returns when pending parts settle."""
        c = self.config
        try:
            self.replay_state = {**self.replay_state, "state": "replaying" if first else "updating"}
            if self.replayer is None:  # held for the actor's life: each update then costs what changed
                self.replayer = ray_data_replayer(c.index_dir, c.markers, home_resources())
            insight = self.replayer.update(
                c.memory_dir,
                settle_s=SETTLE_S,
                whole=dict(self._whole),
                on_read=_measure_lag,
                facts=self.fact_desk.summary(),
                paths=paths,
            )
            self.conversation_index.update(*self.replayer.last_seen)
            if self.search_engine is None:
                self.search_engine = MemorySearch(
                    c.index_dir, self.embedder, c.timezone, facts=self.fact_store, memory_dir=c.memory_dir, replayer=self.replayer
                )
            else:
                self.search_engine.refresh(self.replayer)
            self.insight = insight  # only now: what the insights say is there, search finds
            self.fact_desk.parts_changed()  # a fact whose lines changed is stale from now on
            self._distill_wake.set()  # new or changed parts: their windows are distilled
            self._measure_facts()
            if first:
                self.boot_replay = insight["last_replay"]
            self.replay_state = {
                "state": "ready",
                "boot": self.boot_replay,
                "turns": insight["turns"],
                "parts": insight["parts"],
                "skipped": len(insight["skipped"]),
                "skipped_entries": insight["skipped"][:SKIPPED_SHOWN],  # each with its reason and fix; all of them in insight.json
                "pending": len(insight["pending"]),
                "last_replay": insight["last_replay"],
            }
            _measure_replay(insight, "boot" if first else "update")
            return insight["settles_in_s"] if insight["pending"] else None
        except Exception as exc:
            log.exception("memory replay failed")
            self.replay_state = {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            return None

    def _refresh_conversations(self) -> None:
        try:
            self.conversation_index.refresh(scan_parts(self.config.memory_dir)[0])
        except Exception:
            log.exception("conversation list not refreshed")

    def _index_thread(self) -> None:
        self._refresh_conversations()  # first: a conversation can go on before the replay is done
        self.embedder = self._load_embedder()  # here, not in __init__: loading takes seconds
        if self.embedder is None:
            self.index.embed = None
        self.index.run()

    def _load_embedder(self):
        embedder, state = choose_embedder(self.config.recall)
        if state:
            self.embedding_state = state
            log.warning("embeddings: %s", state.get("fallback") or state.get("reason"))
        return embedder

    def _embed(self, stop: threading.Event) -> None:
        engine = self.search_engine
        if engine is None:
            return
        total = len(engine.turns["hash"])
        fallback = {"fallback": self.embedding_state["fallback"]} if "fallback" in self.embedding_state else {}
        self.embedding_state = {"state": "embedding", "embedded": engine.embedded(), "turns": total, **fallback}
        try:
            # Small batches: a save or a new part interrupts within about a tenth of a second.
            engine.embed_pending(batch=4, chunk=256, stop=stop)
        except Exception as exc:
            log.exception("embedding failed")
            self.embedding_state = {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            return
        done = engine.embedded()
        self.embedding_state = {"state": "ready" if done >= total else "paused", "embedded": done, "turns": total, **fallback}
        metrics.memory_turns().set(done, tags={"kind": "embedded"})

    # -- distilling -------------------------------------------------------------------

    def distill_with(self, target: list | tuple) -> None:
        """The circuit (app, deployment) to distill with, given at creation and told again by
        each brain that finds this actor: whichever created it, the distiller starts once."""
        with self._distill_start:
            if not self.config.distill.enabled or self._distilling is not None:
                return
            self._distilling = (target[0], target[1])
            self.distill_state = {"state": "waiting for the replay"}
            threading.Thread(target=self._distill_thread, args=(self._distilling,), name="memory-distill", daemon=True).start()

    def _distill_thread(self, target: tuple[str, str]) -> None:
        """Distill what is pending whenever the index took parts in (and every minute, for a
        conversation that has gone quiet), through the circuit's deployment, all its slots."""
        from ray import serve

        d, app, deployment = self.config.distill, *target
        circuit = self.config.circuits[d.circuit]
        try:
            distiller = Distiller(self.config, self.fact_store, circuit.n_ctx)
        except ValueError as exc:
            self.distill_state = {"state": "failed", "reason": str(exc)}
            return
        stop = threading.Event()  # never set: the actor's end ends the thread
        complete = None
        while True:
            self._distill_wake.wait(DISTILL_RECHECK_S)
            self._distill_wake.clear()
            if self.search_engine is None:
                continue
            try:
                complete = complete or _through(serve.get_deployment_handle(deployment, app_name=app), d.max_tokens)
                with distilling_lock(self.config.facts_dir):
                    self._distill_counted = 0  # facts_added counts from 0 in each run
                    distiller.run(complete, d.slots or circuit.n_parallel, stop, self._distill_progress)
            except (DistillBusy, CircuitUnavailable) as exc:
                self.distill_state = {**self.distill_state, "state": "waiting", "reason": str(exc)}
            except Exception as exc:
                log.exception("distillation failed")
                self.distill_state = {**self.distill_state, "state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
                time.sleep(5)
            metrics.distill_tokens_per_second().set(0)

    def _distill_progress(self, progress: dict) -> None:
        added, self._distill_counted = progress["facts_added"] - self._distill_counted, progress["facts_added"]
        self.distill_state = {**progress, "circuit": self.config.distill.circuit}
        if added > 0:
            metrics.distill_facts().inc(added)
            self._measure_facts()
            self.index.notify([])  # the index thread embeds the new facts
        for kind, value in (("done", progress["windows_done"]), ("left", progress["windows_left"]), ("open", progress["windows_open"])):
            metrics.distill_windows().set(value, tags={"kind": kind})
        metrics.distill_tokens_per_second().set(progress["tokens_per_s"] if progress["state"] == "distilling" else 0)

    # -- reading ---------------------------------------------------------------------

    def search(self, query: str, k: int = 10, user: str | None = None, mode: str = "hybrid", since: str | None = None, before: str | None = None) -> list[dict]:
        if self.search_engine is None:
            return []
        bounds = {name: parse_bound(name, value, self.config.timezone) for name, value in (("since", since), ("before", before))}
        return [m.as_dict() for m in self.search_engine.search(query, k, user, mode, **bounds)]

    def insights(self) -> dict | None:
        """What the memory holds as search has it: the last update's, else (before the first
        replay of this start) the one the last run left."""
        insight = self.insight
        if insight is None:
            path = self.config.index_dir / "insight.json"
            if not path.is_file():
                return None
            insight = json.loads(path.read_text(encoding="utf-8"))
        return {**insight, "facts": self.fact_desk.summary()}

    def facts(self, operation: str, **arguments) -> dict:
        """One operation of echo.memory.facts.FactDesk (import, list, show, edit, delete, undo,
        forget, profile): {"result": ...}, or {"problems": [...]} for facts refused, nothing changed."""
        answer = self.fact_desk.run(operation, **arguments)
        if operation in CHANGING and "result" in answer:
            self._measure_facts()
            if operation == "import" and answer["result"]["added"]:
                metrics.facts_imported().inc(answer["result"]["added"])
            if operation in ("import", "edit", "undo"):
                self.index.notify([])  # the index thread embeds the new wordings
        return answer

    def _measure_facts(self) -> None:
        state = self.fact_desk.status()
        for kind in ("stored", "stale", "deleted"):
            metrics.facts().set(state[kind], tags={"kind": kind})

    def status(self) -> dict:
        state = self.replay_state["state"]
        return {
            "state": "ready" if state in ("ready", "updating") else state,
            "repaired_at_start": self.repairs,
            "saving": self.saving,
            "replay": self.replay_state,
            "embedding": self.embedding_state,
            "facts": self.fact_desk.status(),
            "distill": self.distill_state,
        }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _through(handle, max_tokens: int):
    """echo.memory.distill.Complete over the circuit's deployment: background requests, greedy
    (a window distilled again gives the same facts), cancelled when the job stops. The calls run
    on an event loop of their own, one for the handle's life: Serve's throughput-optimized
    handles route on the loop of their first call, and this actor's threads have none."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="distill-calls", daemon=True).start()

    async def call(messages: list, response_format: dict):
        response = handle.generate.remote(messages, background=True, greedy=True, response_format=response_format, max_tokens=max_tokens)
        try:
            return await response
        except asyncio.CancelledError:
            response.cancel()  # its slot is free at the engine's next step
            raise
        except KVCacheFullError as exc:  # Ray's error is also the replica's own type
            raise WindowTooLong(str(exc).splitlines()[-1]) from None

    def complete(messages: list, response_format: dict, stop: threading.Event) -> tuple[str, int, int]:
        future = asyncio.run_coroutine_threadsafe(call(messages, response_format), loop)
        while True:
            try:
                done = future.result(timeout=1.0)
                return done.text, done.prompt_tokens, done.completion_tokens
            except concurrent.futures.TimeoutError:
                if stop.is_set():
                    future.cancel()
                    raise

    return complete


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


def actor_name(memory_dir: Path, kind: str = "MemoryActor") -> str:
    # One writer (and one watchdog) per memory folder, so two Echo apps on one cluster never share one.
    return f"{kind}-{hashlib.sha1(str(memory_dir).encode()).hexdigest()[:8]}"


def watchdog_name(memory_dir: Path) -> str:
    return actor_name(memory_dir, "WatchdogActor")


def release_memory_actors(memory_dir: Path) -> None:
    """End the memory folder's watchdog and writer. They are detached, so they outlive the app
    that started them: once it is deleted nothing saves any more, and the next start must make
    them anew with its own config rather than find these by name with the old one."""
    for name in (watchdog_name(memory_dir), actor_name(memory_dir)):
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        except ValueError:  # never started
            pass


def home_resources() -> dict:
    """On a cluster whose head offers the `memory_home` resource (ray_cluster.yaml), the
    memory's actors run there, beside memory/; on one machine, anywhere."""
    return {MEMORY_HOME: 0.01} if ray.cluster_resources().get(MEMORY_HOME) else {}


def memory_actor(config: EchoConfig, distill_target: tuple[str, str] | None = None):
    """The memory folder's writer: created on first use, then found by name. distill_target
    (app, deployment) is the circuit the distiller sends its windows to: given by the brain,
    which creates the actor first, and kept by Ray across the actor's restarts."""
    return MemoryActor.options(
        name=actor_name(config.memory_dir),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_gpus=config.recall.embedding_num_gpus,  # a GGUF embedding model on the GPU needs one in sight
        resources=home_resources(),
    ).remote(config.model_dump(mode="json"), distill_target)
