"""Load figures for issue 7 (printed, not a timed test), and the load generator the tests use.

    .venv/bin/python bench/load.py [--requests 200] [--real-requests 12] [--real-concurrency 4]

1. Instant circuits (configs/instant.yaml: Echo measured, not a model): 200 /api/ask at once
   from 127.0.0.1, each with its user's key, so each also recalls. Every request must get a reply or a 503 with Retry-After, and memory/
   must hold exactly the answered exchanges: requests/s and p50/p95/p99 latency.
2. The real SmolLM2 circuits (configs/default.yaml) at a lower concurrency: the queue
   drains, and nothing is lost. Twice (issue 16): first with n_parallel 1 in every circuit
   (one request at a time, as before continuous batching), then with the config's slots;
   p50 latency and requests/s of the two side by side.         target: p50 >= 2x better
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, percentile  # noqa: E402
from echo.config import DEFAULT_CONFIG, REPO_ROOT  # noqa: E402
from echo.memory.parsing import parse_part  # noqa: E402

INSTANT_CONFIG = REPO_ROOT / "configs" / "instant.yaml"


@dataclass
class Result:
    prompt: str
    status: int | str  # the HTTP status, or the exception's name when no response came
    seconds: float
    retry_after: str | None = None
    body: dict | str | None = None


async def fire(url: str, prompts: list[str], concurrency: int, user: str, timeout: float = 120, token: str | None = None) -> list[Result]:
    """POST each prompt to /api/ask, at most `concurrency` at a time; every outcome recorded."""
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers) as client:

        async def one(prompt: str) -> Result:
            async with gate:
                started = time.perf_counter()
                try:
                    response = await client.post(f"{url}/api/ask", json={"prompt": prompt, "user": user})
                except httpx.HTTPError as exc:
                    return Result(prompt, type(exc).__name__, time.perf_counter() - started)
                seconds = time.perf_counter() - started
                try:
                    body = response.json()
                except ValueError:
                    body = response.text
                return Result(prompt, response.status_code, seconds, response.headers.get("retry-after"), body)

        return await asyncio.gather(*(one(p) for p in prompts))


def saved_prompts(memory_dir: Path, user: str) -> tuple[collections.Counter, list[str]]:
    """How often each prompt of `user` is in memory/, and every torn or broken part found."""
    counts: collections.Counter = collections.Counter()
    problems = []
    for part in sorted(memory_dir.glob(f"day*/{user}/part*.txt")):
        data = part.read_bytes()
        if data and not data.endswith(b"\n"):
            problems.append(f"{part.name}: torn last line")
        try:
            lines = data.decode("utf-8").split("\n")[:-1]
        except UnicodeDecodeError as exc:
            problems.append(f"{part.name}: not UTF-8 ({exc})")
            continue
        turns = parse_part(lines)
        speakers = [t.speaker for t in turns]
        if speakers != ["user", "echo"] * (len(turns) // 2):
            problems.append(f"{part.name}: turns do not alternate user/echo: {speakers[:10]}")
        counts.update(t.text for t in turns if t.speaker == "user")
    return counts, problems


def audit(results: list[Result], memory_dir: Path, user: str) -> list[str]:
    """Everything wrong with a load run: a request with neither a reply nor a 503 +
    Retry-After, or memory/ not holding exactly the answered (and saved) exchanges."""
    problems = []
    for r in results:
        if r.status == 200 and not (isinstance(r.body, dict) and r.body.get("reply") and r.body.get("saved") is True):
            problems.append(f"{r.prompt!r}: 200 without a saved reply: {str(r.body)[:200]}")
        elif r.status == 503 and not r.retry_after:
            problems.append(f"{r.prompt!r}: 503 without Retry-After")
        elif r.status not in (200, 503):
            problems.append(f"{r.prompt!r}: {r.status} after {r.seconds:.1f} s: {str(r.body)[:200]}")
    counts, broken = saved_prompts(memory_dir, user)
    problems += broken
    for r in results:
        expected = 1 if r.status == 200 else 0
        if counts[r.prompt] != expected:
            problems.append(f"{r.prompt!r}: answered {r.status}, in memory/ {counts[r.prompt]} times (expected {expected})")
    strangers = set(counts) - {r.prompt for r in results}
    problems += [f"{p!r}: in memory/ but never asked" for p in sorted(strangers)]
    return problems


def summary(label: str, results: list[Result], seconds: float) -> str:
    answered = [r.seconds * 1000 for r in results if r.status == 200]
    statuses = collections.Counter(str(r.status) for r in results)
    return (
        f"{label}: {len(results)} requests in {seconds:.2f} s = {len(results) / seconds:.1f} req/s "
        f"({len(answered) / seconds:.1f} answered/s); statuses {dict(sorted(statuses.items()))}; "
        f"latency of answers p50 {percentile(answered, 50):.0f} ms, p95 {percentile(answered, 95):.0f} ms, "
        f"p99 {percentile(answered, 99):.0f} ms"
    )


def prompts(label: str, n: int) -> list[str]:
    # Unique prompts: an exchange identical to the last one saved is not saved twice.
    return [f"{label} request {i} 부하 시험 {os.urandom(3).hex()}" for i in range(n)]


def _wait_ready(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=10).json()["status"] == "ready":
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready within {timeout}s")


def _config(base: Path, home: Path, name: str, **overrides) -> Path:
    data = yaml.safe_load(base.read_text(encoding="utf-8"))
    data.update(
        memory_dir=str(home / name / "memory"),
        backup_dir=str(home / name / "backup"),
        quarantine_dir=str(home / name / "quarantine"),
        manifest_dir=str(REPO_ROOT / "manifest"),
        projects_dir=str(home / name / "projects"),
        **overrides,
    )
    path = home / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def run(url: str, label: str, n: int, concurrency: int, memory_dir: Path, title: str | None = None) -> tuple[float, float]:
    """Fire the load, print its figures and audit memory/; the answers' p50 (ms) and requests/s."""
    from echo.brain.users import user_key

    asked = prompts(label, n)
    started = time.perf_counter()
    # As a user with their key, so that every request also recalls, as a real user's does.
    results = asyncio.run(fire(url, asked, concurrency, user=label, token=user_key(os.environ["ECHO_ORIGIN_TOKEN"], label)))
    seconds = time.perf_counter() - started
    print(summary(f"{title or label} (concurrency {concurrency})", results, seconds), flush=True)
    time.sleep(1)
    problems = audit(results, memory_dir, label)
    answered = sum(r.status == 200 for r in results)
    print(f"{label}_memory: {answered} answered, {len(problems)} problems" + "".join(f"\n  {p}" for p in problems[:10]), flush=True)
    return percentile([r.seconds * 1000 for r in results if r.status == 200], 50), len(results) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--real-requests", type=int, default=12)
    parser.add_argument("--real-concurrency", type=int, default=4)
    args = parser.parse_args()

    from ray import serve

    from serve_app import build_app, start_ray

    home = Path(tempfile.mkdtemp(prefix="echo-load-"))
    os.environ["ECHO_ORIGIN_TOKEN"] = secrets.token_hex(16)  # the bench's own owner, before Ray starts
    try:
        start_ray(num_cpus=8, include_dashboard=False, logging_level="warning")
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        url = f"http://127.0.0.1:{port}"
        serve.run(build_app({"config": str(_config(INSTANT_CONFIG, home, "instant"))}), name="echo", route_prefix="/")
        _wait_ready(url)
        run(url, "instant", args.requests, args.requests, home / "instant" / "memory")
        serve.delete("echo")
        figures = {}
        for label, slots in (("smollm2_unbatched", 1), ("smollm2", None)):  # one request at a time per circuit, then the config's slots
            real = _config(DEFAULT_CONFIG, home, label)
            data = yaml.safe_load(real.read_text(encoding="utf-8"))
            for circuit in data["circuits"].values():
                circuit["max_tokens"] = 32
                circuit["n_parallel"] = slots or circuit.get("n_parallel", 1)
            real.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
            serve.run(build_app({"config": str(real)}), name="echo", route_prefix="/")
            _wait_ready(url)
            n_parallel = data["circuits"]["self"]["n_parallel"]
            title = f"smollm2 n_parallel {n_parallel}"
            figures[n_parallel] = run(url, label, args.real_requests, args.real_concurrency, home / label / "memory", title)
            serve.delete("echo")
        (one_p50, one_rps), (p50, rps) = figures[1], figures[max(figures)]
        print(
            f"batching_load: the whole brain (3 circuits) at concurrency {args.real_concurrency}: p50 {p50:.0f} ms with n_parallel {max(figures)} "
            f"against {one_p50:.0f} ms with n_parallel 1, {one_p50 / p50:.2f}x better (target >= 2); {rps:.2f} req/s against {one_rps:.2f} req/s",
            flush=True,
        )
    finally:
        serve.shutdown()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
