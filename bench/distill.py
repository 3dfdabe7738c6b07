"""Distillation figures, in one run, with SmolLM2 in the self circuit (make bench-distill):

  distill_throughput  windows/s and prompt+generated tokens/s through the self circuit's
                      batched engine with its 4 slots, against the same windows one at a time
  distill_answers     /api/ask p50 while a distillation runs in the server, against the same
                      asks with it idle (target <= 1.15x)
  distill_plan        `echo-server plan`'s estimate of the first distillation of 300,000 lines
                      with configs/a40.yaml

The conversations are RealMem's (Apache-2.0, read from ../shared/devsets/realmem, never copied
into the project): English, as SmolLM2 reads. SmolLM2-135M writes poor facts; these figures
are about the mechanics and the speed, not about what the facts say.

    .venv/bin/python bench/distill.py [--windows 8] [--asks 15]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, percentile  # noqa: E402
from bench.recall import REALMEM, write_persona  # noqa: E402
from echo.config import DEFAULT_CONFIG, REPO_ROOT, load_config, parse_config  # noqa: E402
from echo.memory.distill import Distiller, Ledger  # noqa: E402
from echo.memory.facts import FactStore  # noqa: E402

PERSONA = "Lin_Wanyu"


def persona_sessions(work: Path) -> list[Path]:
    """One RealMem persona's sessions written as parts (bench/recall.py's writer), oldest first."""
    persona = write_persona(REALMEM / f"{PERSONA}_dialogues_256k.json", work)
    return sorted(persona.memory.rglob("part*.txt"), key=lambda p: (p.parent.parent.name, int(p.stem[4:])))


def copy_parts(parts: list[Path], source_root: Path, memory: Path) -> None:
    for part in parts:
        target = memory / part.relative_to(source_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(part, target)


def config_for(home: Path, **distill) -> Path:
    data = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    for circuit in data["circuits"].values():
        circuit["max_tokens"] = 32  # the asks' answers: short, as the e2e tests keep them
    data.update(
        memory_dir=str(home / "memory"),
        manifest_dir=str(REPO_ROOT / "manifest"),
        projects_dir=str(home / "projects"),
        distill={"enabled": True, **distill},
        # Lexical recall only: embedding the parts dropped in would load the CPU beside the
        # distiller, and the figure is the distiller's.
        recall={**data.get("recall", {}), "embedding_model": "off"},
    )
    path = home / "echo.yaml"
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


# -- 1. throughput -----------------------------------------------------------------------


def throughput(parts: list[Path], source_root: Path, work: Path, windows: int) -> None:
    from echo.llm.engine import load_engine
    from echo.llm.models import check_models

    config = load_config(config_for(work / "throughput"))
    copy_parts(parts, source_root, config.memory_dir)
    circuit = config.circuits["self"]
    engine = load_engine(circuit, check_models(config)["self"])
    d = config.distill

    def complete(messages, response_format, stop):
        done = engine.chat(messages, max_tokens=d.max_tokens, greedy=True, response_format=response_format, cancel=stop, background=True)
        return done.text, done.prompt_tokens, done.completion_tokens

    figures = {}
    try:
        for slots in (1, circuit.n_parallel):
            store = FactStore(work / f"facts-{slots}")
            distiller = Distiller(config, store, circuit.n_ctx)
            todo, _ = distiller.pending()
            Ledger(store.path.parent).record([{"key": w.key} for w in todo[windows:]])  # the same first windows for both
            started = time.perf_counter()
            result = distiller.run(complete, slots, threading.Event())
            seconds = time.perf_counter() - started
            figures[slots] = (result, seconds)
            print(
                f"distill_run: {slots} slot(s): {result['windows_done'] - (len(todo) - windows)} windows in {seconds:.1f} s, "
                f"{result['facts_added']} facts added, {result['windows_failed']} windows failed ({failures(store.path.parent)}), dropped {result['dropped'] or 'none'}",
                flush=True,
            )
    finally:
        engine.close()
    (one, one_s), (many, many_s) = figures[1], figures[circuit.n_parallel]
    print(
        f"distill_throughput: {circuit.n_parallel} slots: {windows / many_s:.3f} windows/s, {many['tokens'] / many_s:.0f} prompt+generated tokens/s; "
        f"1 slot: {windows / one_s:.3f} windows/s, {one['tokens'] / one_s:.0f} tokens/s: {one_s / many_s:.2f}x "
        f"(this CPU decodes {circuit.n_parallel} sequences for 3-4x the cost of one: its floor is about 1x; the gain is the A40's)",
        flush=True,
    )


def failures(facts_dir: Path) -> dict:
    """The ledger's failed windows by reason."""
    entries = [json.loads(line) for line in (facts_dir / "distilled.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    return dict(Counter(e["failed"][:120] for e in entries if "failed" in e)) or "none"


def _preempted(url: str) -> int:
    return _health(url)["circuits"]["self"]["load"].get("background_preempted", 0)


# -- 2. answers while distilling -------------------------------------------------------------


def _health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=10).json()


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} within {timeout}s")


def asks(url: str, token: str, n: int, label: str) -> list[float]:
    took = []
    for i in range(n):
        started = time.perf_counter()
        response = httpx.post(
            f"{url}/api/ask", json={"prompt": f"{label} {i}: what do you remember about my trips?"}, headers={"Authorization": f"Bearer {token}"}, timeout=300
        )
        response.raise_for_status()
        took.append((time.perf_counter() - started) * 1000)
    return took


def answers_while_distilling(parts: list[Path], source_root: Path, work: Path, n: int) -> None:
    from ray import serve

    from serve_app import build_app, start_ray

    home = work / "server"
    config_path = config_for(home)
    config = load_config(config_path)
    idle_parts, busy_parts = parts[: len(parts) // 2], parts[len(parts) // 2 :]
    copy_parts(idle_parts, source_root, config.memory_dir)
    # Idle: what is in the memory is already distilled (as after the first distillation).
    distiller = Distiller(config, FactStore(config.facts_dir), config.circuits["self"].n_ctx)
    todo, _ = distiller.pending()
    Ledger(config.facts_dir).record([{"key": w.key} for w in todo])
    token = os.environ["ECHO_ORIGIN_TOKEN"]
    start_ray(num_cpus=8, include_dashboard=False, logging_level="warning")
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        url = f"http://127.0.0.1:{port}"
        serve.run(build_app({"config": str(config_path)}), name="echo", route_prefix="/")
        _wait(lambda: _health(url)["status"] == "ready", 300, "Echo ready")
        _wait(lambda: _health(url)["memory"]["distill"]["state"] == "done", 300, "the distiller idle")
        asks(url, token, 2, "warm-up")
        idle = asks(url, token, n, "idle")
        copy_parts(busy_parts, source_root, config.memory_dir)  # new parts dropped in: the watchdog brings them, the distiller starts
        state = _wait(
            lambda: (s := _health(url)["memory"]["distill"])["state"] == "distilling" and s["windows_left"] > 2 and s, 600, "the distiller distilling"
        )
        before = state["windows_done"]
        time.sleep(3)  # its slots are all taken before the asks start
        busy = asks(url, token, n, "busy")
        after = _health(url)["memory"]["distill"]
        p_idle, p_busy = percentile(idle, 50), percentile(busy, 50)
        print(
            f"distill_answers: /api/ask p50 {p_busy:.0f} ms while distilling against {p_idle:.0f} ms idle: {p_busy / p_idle:.2f}x (target <= 1.15); "
            f"p95 {percentile(busy, 95):.0f} against {percentile(idle, 95):.0f} ms; over {n} asks each, as the owner; "
            f"the distiller was {after['state']} throughout with {after['windows_done'] - before} windows done during the asks "
            f"({after['windows_left']} left, {after.get('facts_added', 0)} facts added so far)",
            flush=True,
        )
        print(f"distill_preempted: {_preempted(url)} background requests put aside for an answer in the self circuit", flush=True)
        print(f"distill_server: failures by reason {failures(config.facts_dir)}; spread of the idle asks {statistics.pstdev(idle):.0f} ms", flush=True)
    finally:
        serve.shutdown()
        import ray

        ray.shutdown()


# -- 3. the plan's estimate ---------------------------------------------------------------------


def plan_estimate(parts: list[Path], source_root: Path, work: Path) -> None:
    from echo.ops.distill_plan import estimate, render_estimate

    memory = work / "plan" / "memory"
    copy_parts(parts, source_root, memory)
    data = yaml.safe_load((REPO_ROOT / "configs" / "a40.yaml").read_text(encoding="utf-8"))
    data["memory_dir"] = str(memory)
    config = parse_config(data)
    print("distill_plan: " + render_estimate(config, estimate(config, memory, 300_000)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=8, help="windows distilled for the throughput figure, each way")
    parser.add_argument("--asks", type=int, default=15, help="asks for each latency figure")
    parser.add_argument("--sessions", type=int, default=12, help="RealMem sessions in the memory")
    parser.add_argument("--only", choices=("plan", "throughput", "answers"), help="print only that figure")
    args = parser.parse_args()
    if not REALMEM.is_dir():
        sys.exit(f"RealMem is not at {REALMEM}: the bench reads its conversations from there")
    work = Path(tempfile.mkdtemp(prefix="echo-distill-"))
    os.environ.setdefault("ECHO_ORIGIN_TOKEN", secrets.token_hex(16))  # the bench's own owner, before Ray starts
    try:
        parts = persona_sessions(work / "realmem")
        source_root = parts[0].parent.parent.parent
        chosen = parts[: args.sessions]
        if args.only in (None, "plan"):
            plan_estimate(parts, source_root, work)
        if args.only in (None, "throughput"):
            throughput(chosen, source_root, work, args.windows)
        if args.only in (None, "answers"):
            answers_while_distilling(chosen, source_root, work, args.asks)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
