"""Parts of Echo die or the disk fails: the reply still comes, and no acknowledged save is lost."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from bench.load import fire, prompts, saved_prompts
from echo.memory.store import day_folder
from tests.e2e.harness import Echo, sse_events, wait_for

pytestmark = pytest.mark.e2e


def health(echo: Echo) -> dict:
    return httpx.get(f"{echo.url}/health", timeout=30).json()


def replica_actor(replica_id: str):
    import ray

    for actor in ray.util.list_named_actors(all_namespaces=True):
        if replica_id in actor["name"]:
            return ray.get_actor(actor["name"], namespace=actor["namespace"])
    raise LookupError(f"no actor for replica {replica_id}")


def test_a_circuit_replica_killed_mid_generation_degrades_that_reply_and_is_replaced(echo: Echo):
    import ray

    before = health(echo)["circuits"]["creation"]["replica"]
    events = []
    with httpx.stream(
        "POST",
        f"{echo.url}/api/ask",
        json={"prompt": "Tell me a long story about the sea.", "user": "faults", "stream": True},
        headers={"Authorization": f"Bearer {echo.key('faults')}"},
        timeout=180,
    ) as response:
        for name, data in sse_events(response):
            events.append((name, data))
            if name == "token" and data["circuit"] == "creation" and ("killed", {}) not in events:
                ray.kill(replica_actor(before), no_restart=True)  # mid-generation
                events.append(("killed", {}))
    assert ("killed", {}) in events, "creation never started generating"
    done = events[-1][1]
    assert events[-1][0] == "done" and done["degraded"] is True and "creation" in done["failed"], events[-1]
    assert set(done["circuits"]) == {"emotion", "self"} and done["reply"] and done["saved"] is True

    def replaced():
        creation = health(echo)["circuits"]["creation"]
        return creation["state"] == "ready" and creation.get("replica") != before

    wait_for(replaced, timeout=120, what="Serve replacing the killed replica")
    whole = echo.ask({"prompt": "다시 괜찮아졌니?", "user": "faults"}).json()
    assert whole["degraded"] is False and set(whole["circuits"]) == {"emotion", "self", "creation"}


def test_the_memory_actor_killed_during_a_burst_keeps_every_acknowledged_save(instant: Echo):
    import ray

    from actors.memory_actor import NAMESPACE, actor_name

    memory = instant.home / "memory"
    asked = prompts("burst", 120)
    outcome: list = []
    burst = threading.Thread(
        target=lambda: outcome.extend(asyncio.run(fire(instant.url, asked, concurrency=6, user="burst", timeout=120, token=instant.key("burst"))))
    )
    burst.start()
    wait_for(lambda: sum(saved_prompts(memory, "burst")[0].values()) >= 15, timeout=60, what="the first saves of the burst")
    ray.kill(ray.get_actor(actor_name(memory), namespace=NAMESPACE), no_restart=False)
    burst.join(timeout=180)
    assert not burst.is_alive() and len(outcome) == len(asked)
    counts, problems = saved_prompts(memory, "burst")
    assert problems == []  # no torn line, every exchange whole
    acknowledged = [r for r in outcome if r.status == 200 and r.body["saved"] is True]
    unsaved = [r for r in outcome if r.status == 200 and r.body["saved"] is False]
    assert len(acknowledged) >= 15 and all(counts[r.prompt] == 1 for r in acknowledged)
    assert all(counts[r.prompt] <= 1 for r in outcome)  # nothing twice, acknowledged or not
    assert all(r.body["unsaved_reason"] for r in unsaved)
    wait_for(lambda: instant.ask({"prompt": "burst 다음 질문", "user": "burst"}).json().get("saved"), timeout=60, what="a save after the restart")


def test_a_line_torn_by_a_crash_is_repaired_when_the_memory_actor_comes_back(instant: Echo):
    import ray

    from actors.memory_actor import NAMESPACE, actor_name

    torn = instant.home / "memory" / "day0102" / "crash" / "part1.txt"
    torn.parent.mkdir(parents=True)
    torn.write_bytes("나의 말:\n다 쓰인 줄\n에코의 말:\n".encode() + "쓰다 만 대".encode()[:-1])  # cut inside a character
    actor = ray.get_actor(actor_name(instant.home / "memory"), namespace=NAMESPACE)
    ray.kill(actor, no_restart=False)  # as a crash of the process would

    def repaired():
        try:
            return ray.get(actor.status.remote(), timeout=30)["repaired_at_start"]
        except ray.exceptions.RayError:
            return None

    reports = wait_for(repaired, timeout=120, what="the restarted memory actor")
    assert any("day0102/crash/part1.txt" in r and "quarantine" in r for r in reports), reports
    assert torn.read_bytes() == "나의 말:\n다 쓰인 줄\n에코의 말:\n".encode()
    assert (instant.home / "memory_quarantine" / "day0102" / "crash" / "part1.txt").read_bytes() == "쓰다 만 대".encode()[:-1] + b"\n"


def _mount_tmpfs(where: Path, size: str, read_only: bool = False) -> None:
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"a small file system is needed to fill the disk for real, and mount was refused: {done.stderr.strip()}")


@pytest.mark.parametrize("fault, error", [("full", "No space left on device"), ("read_only", "Read-only file system")])
def test_a_full_or_read_only_disk_still_answers_marked_unsaved_and_health_says_why(instant: Echo, fault, error):
    user = f"disk-{fault}"
    folder = instant.home / "memory" / day_folder(datetime.now(timezone.utc), "Asia/Seoul") / user
    _mount_tmpfs(folder, "16k", read_only=fault == "read_only")
    try:
        if fault == "full":
            head = "나의 말:\n가득\n에코의 말:\n".encode()
            (folder / "part1.txt").write_bytes(head + b"x" * (8191 - len(head)) + b"\n")  # whole pages: any append needs one more
            assert subprocess.run(["dd", "if=/dev/zero", f"of={folder}/filler", "bs=1k"], capture_output=True).returncode != 0  # full
        before = (folder / "part1.txt").read_bytes() if (folder / "part1.txt").exists() else None
        body = instant.ask({"prompt": "디스크가 꽉 차도 대답해 줄래? " * 40, "user": user}).json()
        assert body["reply"] and body["saved"] is False and error in body["unsaved_reason"], body
        after = (folder / "part1.txt").read_bytes() if (folder / "part1.txt").exists() else None
        assert after == before  # no half exchange written
        status = health(instant)
        assert status["status"] == "degraded" and status["memory"]["saving"]["state"] == "failing"
        assert error in status["memory"]["saving"]["reason"] and "free space" in status["memory"]["saving"]["fix"]
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
    body = instant.ask({"prompt": "이제 저장돼?", "user": user}).json()
    assert body["saved"] is True and health(instant)["memory"]["saving"]["state"] == "ok"
