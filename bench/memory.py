"""Memory benchmarks: replay of a realistic 300k-line memory, search speed, and recall@10.

    .venv/bin/python bench/memory.py [--parts 760] [--devset-parts 60] [--workdir DIR]

One run prints, each on its own line:
  replay_cold       full replay in a fresh process, Python and Ray start included
  replay_warm       full replay again with Ray running (median of 3), and the ratio to plain
                    Python (one process reading, parsing and cleaning the same files, median of 3)
  replay_one_part   replay after one part was appended to
  peak_memory       the replaying process tree's peak resident memory
  lexical_search    p50/p95 over the dev set's queries at full size
  dense_embedding   e5 passages per second on this machine
  recall@10         lexical, dense and hybrid on the dev set (facts planted in a smaller memory,
                    all of it embedded), by language and by kind of query
Targets: cold <= 30 s, warm <= 5x plain Python, one part <= 2 s, search p95 <= 50 ms,
peak <= 3 GB, hybrid recall@10 > lexical.

With --scaling it prints only (issue 25), each in a 300,000-line memory and in a 1,000,000-line
one, interleaved, median of 5 each, and the ratio:
  replay_one_part_scaling       one part's update by a held Replayer told where (a save, the
                                watchdog's event), as the MemoryActor runs it   target: <= 1.3x
  replay_one_part_scaling_scan  the same, scanning all of memory/ (the MemoryActor's update
                                every five minutes, and at start)
  search_refresh_scaling        the search taking the updated turns in (MemorySearch.refresh)
  lexical_search_scaling        lexical search p95 over the dev set's queries at either size
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import percentile  # noqa: E402
from bench.memory_gen import generate_memory, load_devset  # noqa: E402
from echo.memory.parsing import parse_part  # noqa: E402
from echo.memory.store import scan_parts  # noqa: E402

CHILD = r"""
import json, sys, time
from pathlib import Path
memory, index = Path(sys.argv[1]), Path(sys.argv[2])
from serve_app import start_ray
from pipelines.ray_data_replay import replay_with_ray_data
start_ray(None, include_dashboard=False, log_to_driver=False)
insight = replay_with_ray_data(memory, index, force=True)
print(json.dumps({"event": "cold", "at": time.time(), "insight": insight["last_replay"], "turns": insight["turns"]}), flush=True)
runs = []
for _ in range(3):
    started = time.perf_counter()
    insight = replay_with_ray_data(memory, index, force=True)
    runs.append(time.perf_counter() - started)
print(json.dumps({"event": "warm", "runs": runs, "insight": insight["last_replay"]}), flush=True)
part = sorted(memory.glob("day*/origin/part*.txt"))[len(sorted(memory.glob("day*/origin/part*.txt"))) // 2]
with part.open("a", encoding="utf-8") as handle:
    handle.write("나의 말:\n방금 추가한 한 줄\n")
started = time.perf_counter()
insight = replay_with_ray_data(memory, index)
print(json.dumps({"event": "one_part", "seconds": time.perf_counter() - started, "insight": insight["last_replay"]}), flush=True)
"""


def tree_rss(root_pid: int) -> int:
    """Resident bytes of a process and all its descendants (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/status") as handle:
                total += next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def plain_python(memory: Path) -> tuple[float, int]:
    """The floor: one process reading, parsing and cleaning every part."""
    started = time.perf_counter()
    lines = 0
    for part in scan_parts(memory)[0]:
        text = (memory / part.path).read_bytes().decode("utf-8").split("\n")
        lines += len(text)
        parse_part(text)
    return time.perf_counter() - started, lines


def replay_in_fresh_process(memory: Path, index: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    launched = time.time()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(memory), str(index)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(child.pid))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    events = {}
    for line in child.stdout:
        if line.startswith("{"):
            event = json.loads(line)
            events[event["event"]] = event
    child.wait()
    done.set()
    sampler.join()
    if child.returncode != 0 or "one_part" not in events:
        raise SystemExit(f"the replay process failed (exit {child.returncode}); run it by hand: python -c CHILD {memory} {index}")
    events["cold"]["seconds"] = events["cold"]["at"] - launched
    events["peak_bytes"] = peak[0]
    return events


def search_speed(index: Path, queries: list[str]) -> tuple[float, float]:
    from echo.memory.search import MemorySearch

    search = MemorySearch(index)
    for q in queries[:10]:
        search.search(q, 10, mode="lexical")  # warm the caches
    times = []
    for q in queries:
        started = time.perf_counter()
        search.search(q, 10, mode="lexical")
        times.append((time.perf_counter() - started) * 1000)
    return percentile(times, 50), percentile(times, 95)


def recall_at_10(work: Path, devset: list[dict], parts: int, threads: int) -> tuple[dict, float]:
    """recall@10 per mode, overall and by language and kind; and e5 passages per second."""
    from echo.memory.dense import E5Embedder
    from echo.memory.replay import replay
    from echo.memory.search import MemorySearch

    memory, index = work / "devset_memory", work / "devset_index"
    generate_memory(memory, parts=parts, days=max(3, parts // 19), facts=devset)
    replay(memory, index)
    search = MemorySearch(index, E5Embedder(threads))
    todo = len(search.vectors.missing(search.turns["hash"]))
    started = time.perf_counter()
    search.embed_pending()
    per_second = todo / (time.perf_counter() - started) if todo else float("nan")  # nan: every vector was already kept in --workdir
    table: dict[str, dict[str, list[int]]] = {}
    for mode in ("lexical", "dense", "hybrid"):
        for entry in devset:
            found = search.search(entry["query"], 10, mode=mode)
            hit = int(any(entry["answer"] in m.text for m in found))
            for group in ("all", entry["lang"], entry["kind"]):
                table.setdefault(mode, {}).setdefault(group, []).append(hit)
    return {mode: {g: sum(h) / len(h) for g, h in groups.items()} for mode, groups in table.items()}, per_second


def scaling(workdir: str | None) -> int:
    """One part's update at 300,000 lines and at 1,000,000, in one run."""
    from echo.memory.search import MemorySearch
    from pipelines.ray_data_replay import ray_data_replayer
    from serve_app import start_ray

    with tempfile.TemporaryDirectory() as temporary:
        work = Path(workdir or temporary)
        sizes = {"300k": 760, "1M": 2530}
        for label, parts in sizes.items():
            memory = work / label / "memory"
            if not memory.is_dir():
                generate_memory(memory, parts=parts, days=max(40, parts // 19))
        start_ray(None, include_dashboard=False, log_to_driver=False)
        # Held for the run, as the MemoryActor holds its Replayer for its life.
        replayers = {label: ray_data_replayer(work / label / "index") for label in sizes}
        searches: dict[str, MemorySearch] = {}
        ways = ("told", "scan", "search")
        seconds: dict[tuple[str, str], list[float]] = {(way, label): [] for way in ways for label in sizes}
        lines = {}
        for label, replayer in replayers.items():
            lines[label] = replayer.update(work / label / "memory", force=True)["lines"]
            searches[label] = MemorySearch(work / label / "index", replayer=replayer)
        for round_ in range(6):  # interleaved; the first round warms both
            for label, replayer in replayers.items():
                memory = work / label / "memory"
                parts = sorted(memory.glob("day*/origin/part*.txt"))
                for way in ("told", "scan"):
                    part = parts[len(parts) // 2 + (way == "scan")]
                    with part.open("a", encoding="utf-8") as handle:
                        handle.write(f"나의 말:\n방금 추가한 한 줄 {round_}\n")
                    started = time.perf_counter()
                    # told: where a save or the watchdog's event says; scan: all of memory/, as every five minutes
                    insight = replayer.update(memory, paths=[part.relative_to(memory).as_posix()] if way == "told" else None)
                    if round_:
                        seconds[(way, label)].append(time.perf_counter() - started)
                    assert insight["last_replay"]["parts_read"] == 1, insight["last_replay"]
                started = time.perf_counter()
                searches[label].refresh(replayer)
                if round_:
                    seconds[("search", label)].append(time.perf_counter() - started)
        queries = [e["query"] for e in load_devset()] * 2
        speed = {label: search_speed(work / label / "index", queries) for label in sizes}
        print(
            f"lexical_search_scaling: p95 {speed['300k'][1]:.1f} ms at {lines['300k']} lines, {speed['1M'][1]:.1f} ms at {lines['1M']} lines "
            f"over {len(queries)} queries (target p95 <= 50 ms at either)",
            flush=True,
        )
        for way, name in (("told", "replay_one_part_scaling"), ("scan", "replay_one_part_scaling_scan"), ("search", "search_refresh_scaling")):
            small, large = (statistics.median(seconds[(way, label)]) for label in sizes)
            target = f"(target <= 1.3x: {'met' if large <= 1.3 * small else 'NOT met'})" if way == "told" else "(no target)"
            print(
                f"{name}: {small:.3f} s at {lines['300k']} lines, {large:.3f} s at {lines['1M']} lines "
                f"(medians of 5, interleaved): {large / small:.2f}x {target}",
                flush=True,
            )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=int, default=760, help="parts in the big memory (395 lines each)")
    parser.add_argument("--devset-parts", type=int, default=60, help="parts in the memory the dev set is planted in")
    parser.add_argument("--threads", type=int, default=2, help="embedding threads")
    parser.add_argument("--workdir", help="keep the generated memories here (default: a temporary folder)")
    parser.add_argument("--scaling", action="store_true", help="only one part's update at 300,000 lines against 1,000,000")
    args = parser.parse_args()
    if args.scaling:
        return scaling(args.workdir)
    devset = load_devset()
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(args.workdir or temporary)
        memory, index = work / "memory", work / "index"
        summary = generate_memory(memory, parts=args.parts, facts=devset) if not memory.is_dir() else None
        print(f"memory: {args.parts} parts, {summary['lines'] if summary else '?'} lines in {memory}", flush=True)
        floors = [plain_python(memory) for _ in range(3)]
        floor, lines = statistics.median(f[0] for f in floors), floors[0][1]
        events = replay_in_fresh_process(memory, index)
        cold, warm, one = events["cold"], events["warm"], events["one_part"]
        warm["seconds"] = statistics.median(warm["runs"])
        print(
            f"replay_cold: {cold['seconds']:.1f} s for {lines} lines, {cold['turns']} turns, Python and Ray start included, reader {cold['insight']['reader']} (target <= 30 s)"
        )
        print(
            f"replay_warm: {warm['seconds']:.2f} s ({lines / warm['seconds']:.0f} lines/s; runs {', '.join(f'{r:.2f}' for r in warm['runs'])}); "
            f"plain Python read+parse+clean {floor:.2f} s ({lines / floor:.0f} lines/s; runs {', '.join(f'{f[0]:.2f}' for f in floors)}); "
            f"ratio of medians {warm['seconds'] / floor:.2f} (target <= 5)"
        )
        print(f"replay_one_part: {one['seconds']:.2f} s, {one['insight']['parts_read']} part read, reader {one['insight']['reader']} (target <= 2 s)")
        print(f"peak_memory: {events['peak_bytes'] / 2**30:.2f} GiB for the replaying process tree (Ray included) (target <= 3 GB)")
        queries = [e["query"] for e in devset] * 2
        p50, p95 = search_speed(index, queries)
        print(f"lexical_search: p50 {p50:.1f} ms, p95 {p95:.1f} ms over {len(queries)} queries at {lines} lines (target p95 <= 50 ms)", flush=True)
        table, per_second = recall_at_10(work, devset, args.devset_parts, args.threads)
        print(
            f"dense_embedding: {per_second:.0f} turns/s with e5-small q4 on {args.threads} threads ({cold['turns'] / per_second / 60:.0f} min for the {cold['turns']} turns of the big memory)"
        )
        for mode, groups in table.items():
            detail = ", ".join(f"{g} {v:.2f}" for g, v in groups.items() if g != "all")
            print(f"recall@10 {mode}: {groups['all']:.2f} ({detail}) over {len(devset)} queries")
        better = table["hybrid"]["all"] > table["lexical"]["all"]
        print(f"hybrid_vs_lexical: {table['hybrid']['all']:.2f} vs {table['lexical']['all']:.2f} ({'hybrid better' if better else 'NOT better'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
