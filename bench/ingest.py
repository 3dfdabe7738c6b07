"""Ingestion benchmarks: how fast parts dropped into memory/ become searchable.

    .venv/bin/python bench/ingest.py [--parts 760] [--new 100] [--rate 10] [--storm 1000]

Starts Ray with Echo's MemoryActor and WatchdogActor over a realistic memory (generated,
760 parts by default, replayed first, embeddings running in the background as in a real
server), then prints, each on its own line:
  ingestion_lag   p50/p95 from a new part's write to its turns being found by search,
                  for --new parts written --rate a second (target: within 2 s)
  storm           the time to ingest --storm parts moved in at once, with lines per second,
                  and the peak memory of the whole Ray process tree meanwhile
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import percentile, wait_until  # noqa: E402
from bench.memory import tree_rss  # noqa: E402
from bench.memory_gen import generate_memory  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=int, default=760, help="parts in the memory before the test")
    parser.add_argument("--new", type=int, default=100, help="new parts for the lag test")
    parser.add_argument("--rate", type=float, default=10.0, help="new parts a second")
    parser.add_argument("--storm", type=int, default=1000, help="parts moved in at once")
    args = parser.parse_args()

    import ray

    from actors.memory_actor import memory_actor
    from actors.watchdog_actor import watchdog_actor
    from echo.config import load_config
    from serve_app import start_ray

    with tempfile.TemporaryDirectory() as temporary:
        home = Path(temporary)
        generate_memory(home / "memory", parts=args.parts)
        config = load_config().model_copy(
            update={
                "memory_dir": home / "memory",
                "index_dir": home / "memory_index",
                "manifest_dir": REPO / "manifest",
                "backup_dir": home / "backup",
                "quarantine_dir": home / "quarantine",
            }
        )
        start_ray(None, include_dashboard=False, log_to_driver=False)
        memory = memory_actor(config)
        started = time.perf_counter()
        wait_until(lambda: ray.get(memory.status.remote())["replay"]["state"] == "ready", 300, "the first replay", every=0.05)
        print(f"memory: {args.parts} parts replayed in {time.perf_counter() - started:.1f} s (Ray Data, at boot)", flush=True)
        watchdog = watchdog_actor(config)
        wait_until(lambda: ray.get(watchdog.status.remote())["state"] == "watching", 60, "the watchdog", every=0.05)

        # Lag: parts written at a steady rate, each with a word no other turn has.
        written: dict[str, float] = {}
        lags: dict[str, float] = {}
        done = threading.Event()

        def poll() -> None:
            while not done.is_set() or len(lags) < len(written):
                for word, at in list(written.items()):
                    if word not in lags and ray.get(memory.search.remote(word, 1, None, "lexical")):
                        lags[word] = time.time() - at
                time.sleep(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        folder = home / "memory" / "day1230" / "bench"
        folder.mkdir(parents=True)
        for n in range(1, args.new + 1):
            word = f"zq{uuid.uuid4().hex[:12]}"
            lines = [f"나의 말:\n오늘 정리한 메모 {word}", "ChatGPT의 말:\n좋아요, 기억해 둘게요."] * 10
            path = folder / f"part{n}.txt"
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            written[word] = time.time()
            time.sleep(1 / args.rate)
        done.set()
        poller.join(timeout=120)
        values = sorted(lags.values())
        print(
            f"ingestion_lag: p50 {statistics.median(values):.2f} s, p95 {percentile(values, 95):.2f} s, max {values[-1]:.2f} s "
            f"for {len(values)}/{args.new} new parts written {args.rate:g} a second (target: searchable within 2 s)",
            flush=True,
        )

        # Storm: many parts moved into place at once (a copy from another machine).
        staging = home / "staging"
        summary = generate_memory(staging, parts=args.storm, days=10, seed=7)
        for day in staging.iterdir():
            day.rename(home / "memory" / f"day12{day.name[-2:]}")  # December: days no other part uses
        moved = time.perf_counter()
        peak = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], tree_rss(os.getpid()))
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        expected = args.parts + args.new + args.storm

        def ingested():
            replay = ray.get(memory.status.remote())["replay"]
            return replay.get("parts") == expected and not replay.get("pending") and replay["state"] == "ready"

        wait_until(ingested, 600, "the storm's ingestion", every=0.05)
        seconds = time.perf_counter() - moved
        stop.set()
        sampler.join()
        print(
            f"storm: {args.storm} parts ({summary['lines']} lines) ingested in {seconds:.1f} s ({summary['lines'] / seconds:.0f} lines/s); "
            f"peak memory of the Ray process tree {peak[0] / 2**30:.2f} GiB; memory now {expected} parts",
            flush=True,
        )
        ray.shutdown()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TimeoutError as exc:  # what did not happen, without a traceback
        sys.exit(str(exc))
