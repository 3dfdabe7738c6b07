"""Conversation list figures for issue 24 (printed, not a timed test).

    .venv/bin/python bench/conversations.py [--small 30000] [--large 300000] [--requests 200]

Two memories of Echo's own saved exchanges (stamped, as Echo writes them), one of about
30,000 lines and one of about 300,000: in each, the user `reader` has 1,000 conversations,
one of them 200 exchanges long, and other users fill the rest. Each memory is served by its
own Echo app (instant circuits, embeddings off: Echo measured, not a model) on one Ray
cluster; then, over HTTP from 127.0.0.1, `GET /api/conversations` (reader's newest 50) and
`GET /api/conversations/{id}` (the 200-exchange one), sequentially:
p50 and p95 of each in both memories, the requests interleaved, and the large one's p95 as
a share of the small one's.
target: at most 1.5x (the list is kept as exchanges are saved, never read from the parts per request)
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, percentile, wait_until  # noqa: E402
from echo.config import REPO_ROOT  # noqa: E402
from echo.memory.conversation import conversation_key  # noqa: E402
from echo.memory.parsing import stamp_line  # noqa: E402
from echo.memory.store import exchange_lines  # noqa: E402

READER = "reader"
CONVERSATIONS = 1_000
LONG = 200
PART_LINES = 395
EXCHANGE_LINES = 5  # a stamp, two markers, a prompt line and a reply line


def write_memory(root: Path, lines: int) -> dict:
    """reader's 1,000 conversations (the first LONG exchanges long), then other users' short
    ones up to about `lines` lines, each user's exchanges in parts of PART_LINES lines, a day
    folder per 2,000 exchanges. Returns {"lines", "exchanges", "long": its key}."""
    start = datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)
    exchanges: list[tuple[str, str, str, str]] = []  # (user, key, prompt, reply)
    for n in range(CONVERSATIONS):
        key = conversation_key(f"reader-{n}")
        for turn in range(LONG if n == 0 else 1):
            exchanges.append((READER, key, f"Conversation {n}, question {turn}: what about the trip?", f"Answer {turn} about the trip."))
    others = max(0, lines // EXCHANGE_LINES - len(exchanges))
    for n in range(others):
        exchanges.append((f"user{n % 50}", conversation_key(f"other-{n // 3}"), f"Other question {n}", f"Other answer {n}"))
    written: dict[tuple[str, str], tuple[list[str], int]] = {}  # (day, user) -> (lines of the open part, parts closed)
    total = 0
    for i, (user, key, prompt, reply) in enumerate(exchanges):
        at = start + timedelta(seconds=30 * i)
        day = f"day{(start + timedelta(days=i // 2000)):%m%d}"
        block = exchange_lines(prompt, reply, stamp=stamp_line(at.isoformat(timespec="seconds"), key))
        current, closed = written.get((day, user), ([], 0))
        if len(current) + len(block) > PART_LINES:
            _write_part(root, day, user, closed + 1, current)
            current, closed = [], closed + 1
        written[(day, user)] = (current + block, closed)
        total += len(block)
    for (day, user), (current, closed) in written.items():
        if current:
            _write_part(root, day, user, closed + 1, current)
    return {"lines": total, "exchanges": len(exchanges), "long": conversation_key("reader-0")}


def _write_part(root: Path, day: str, user: str, number: int, lines: list[str]) -> None:
    folder = root / day / user
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"part{number}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def config_for(home: Path) -> Path:
    data = yaml.safe_load((REPO_ROOT / "configs" / "instant.yaml").read_text(encoding="utf-8"))
    data.update(
        memory_dir=str(home / "memory"),
        backup_dir=str(home / "backup"),
        quarantine_dir=str(home / "quarantine"),
        manifest_dir=str(REPO_ROOT / "manifest"),
        projects_dir=str(home / "projects"),
    )
    data.setdefault("recall", {})["embedding_model"] = "off"  # no vectors being made while it is timed
    path = home / "echo.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def timed(client: httpx.Client, url: str, params: dict, n: int) -> list[float]:
    seconds = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(url, params=params)
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    return seconds


def ready(client: httpx.Client, url: str, label: str, made: dict) -> None:
    """Once the app lists reader's conversations and its replay is done (nothing else runs while timed)."""

    def listed():
        try:
            response = client.get(f"{url}/api/conversations", params={"user": READER, "limit": 1})
            return response.status_code == 200 and response.json()["total"] == CONVERSATIONS
        except httpx.HTTPError:
            return False

    def replayed():
        try:
            return client.get(f"{url}/health").json()["memory"]["state"] == "ready"
        except (httpx.HTTPError, KeyError, ValueError):
            return False

    booted = time.perf_counter()
    wait_until(listed, 600, f"the {label} memory's conversation list")
    first = time.perf_counter() - booted
    wait_until(replayed, 1200, f"the {label} memory's replay", every=1)
    print(
        f"{label}: {made['lines']} lines, {made['exchanges']} exchanges; reader's {CONVERSATIONS} conversations listed "
        f"{first:.1f} s after the app was up, the replay done at {time.perf_counter() - booted:.1f} s",
        flush=True,
    )
    got = client.get(f"{url}/api/conversations/{made['long']}", params={"user": READER}).json()
    assert len(got["exchanges"]) == LONG, len(got["exchanges"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=30_000, help="lines of the small memory")
    parser.add_argument("--large", type=int, default=300_000, help="lines of the large memory")
    parser.add_argument("--requests", type=int, default=500, help="of each kind, in each memory")
    args = parser.parse_args()

    from ray import serve

    from actors.memory_actor import release_memory_actors
    from echo.brain.users import user_key
    from serve_app import build_app, start_ray

    os.environ["ECHO_ORIGIN_TOKEN"] = token = secrets.token_hex(16)  # the bench's own owner, before Ray starts
    with tempfile.TemporaryDirectory(prefix="echo-conversations-", ignore_cleanup_errors=True) as temporary:
        start_ray(num_cpus=8, include_dashboard=False, logging_level="warning")
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        sizes = {"small": args.small, "large": args.large}
        made, urls = {}, {}
        for label, lines in sizes.items():
            home = Path(temporary) / label
            made[label] = write_memory(home / "memory", lines)
            serve.run(build_app({"config": str(config_for(home))}), name=label, route_prefix=f"/{label}")
            urls[label] = f"http://127.0.0.1:{port}/{label}"
        samples: dict[tuple[str, str], list[float]] = {(label, kind): [] for label in sizes for kind in ("list", "read_200")}
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {user_key(token, READER)}"}) as client:
            for label in sizes:
                ready(client, urls[label], label, made[label])
            for _ in range(10):  # warm both
                for label in sizes:
                    client.get(f"{urls[label]}/api/conversations", params={"user": READER}).raise_for_status()
            # Interleaved, so that whatever else this machine does falls on both memories alike.
            for _ in range(args.requests):
                for label in sizes:
                    samples[(label, "list")] += timed(client, f"{urls[label]}/api/conversations", {"user": READER}, 1)
                    samples[(label, "read_200")] += timed(client, f"{urls[label]}/api/conversations/{made[label]['long']}", {"user": READER}, 1)
        for kind in ("list", "read_200"):
            for label in sizes:
                sample = samples[(label, kind)]
                print(
                    f"conversations_{kind} {label} ({made[label]['lines']} lines): p50 {percentile(sample, 50) * 1000:.2f} ms, p95 {percentile(sample, 95) * 1000:.2f} ms",
                    flush=True,
                )
            small, large = (percentile(samples[(label, kind)], 95) for label in sizes)
            print(f"conversations_{kind} p95 large/small: {large / small:.2f}x (target <= 1.5x: {'met' if large <= 1.5 * small else 'NOT met'})", flush=True)
        for label in sizes:
            serve.delete(label)
            release_memory_actors(Path(temporary) / label / "memory")
        serve.shutdown()


if __name__ == "__main__":
    main()
