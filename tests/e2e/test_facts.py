"""What Echo knows, end to end with Ray and SmolLM2: facts imported over HTTP by the owner,
recalled for the person they are about and never for anyone else, in the prompt as the
profile, forgotten on request, kept across a restart of the memory actor, restored from the backup."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from echo.config import REPO_ROOT
from tests.e2e.harness import GUEST_FACT, Echo, memory_ready, owner, wait_for

pytestmark = pytest.mark.e2e

SURF = {"user": "minji", "text": "Minji is picking up an ocean sport: surfing lessons in Yangyang", "kind": "profile", "about": "minji"}
STORIES = {"user": "minji", "text": "Minji wants replies without long stories", "kind": "preference"}


def cite(line: int) -> list[dict]:
    return [{"path": GUEST_FACT[0], "line_start": line, "line_end": line + 1}]


def facts_of(echo: Echo, user: str | None, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{echo.url}/api/memory/facts", params={"user": user} if user else {}, headers=headers, timeout=30)


def surf_line(echo: Echo) -> int:
    """Where the sample's surfing turn starts (its marker line)."""
    return (echo.home / "memory" / GUEST_FACT[0]).read_text(encoding="utf-8").split("\n").index(GUEST_FACT[1])


@pytest.fixture(scope="module")
def imported(echo: Echo) -> dict:
    memory_ready(echo)
    lines = [json.dumps({**SURF, "cites": cite(surf_line(echo))}), json.dumps({**STORIES, "cites": cite(1)})]
    bad = httpx.post(
        f"{echo.url}/api/memory/facts/import",
        content="\n".join([lines[0], '{"user": "minji", "text": "x", "cites": [{"path": "../../etc/passwd", "line_start": 1, "line_end": 1}]}']),
        headers=owner(echo),
        timeout=30,
    )
    assert bad.status_code == 422 and "line 2" in bad.json()["error"]["message"] and "leaves the memory folder" in bad.json()["error"]["message"]
    assert facts_of(echo, "minji", echo.token).json()["total"] == 0  # nothing half imported
    done = httpx.post(f"{echo.url}/api/memory/facts/import", content="\n".join(lines) + "\n", headers=owner(echo), timeout=30)
    assert done.status_code == 200 and done.json()["added"] == 2, done.text
    again = httpx.post(f"{echo.url}/api/memory/facts/import", content="\n".join(lines), headers=owner(echo), timeout=30).json()
    assert again["added"] == 0 and again["unchanged"] == 2
    return {f["text"]: f for f in facts_of(echo, "minji", echo.token).json()["facts"]}


def test_a_users_ask_recalls_a_fact_found_turn_and_carries_the_profile(echo: Echo, imported):
    def asked():
        body = echo.ask({"prompt": "Which ocean sport am I picking up?", "user": "minji"}).json()
        return body if any(m.get("fact") for m in body.get("memories", [])) else None

    body = wait_for(asked, timeout=120, what="an answer whose memories a fact found (its vector is made in the background)")
    found = next(m for m in body["memories"] if m.get("fact"))
    assert (found["path"], found["line_start"]) == (GUEST_FACT[0], surf_line(echo)) and found["fact"]["text"] == SURF["text"]
    assert {f["text"] for f in body["facts"]} == {SURF["text"], STORIES["text"]}  # the profile, in every circuit's system prompt
    assert body["reply"] and body["saved"] is True


def test_another_user_and_a_guest_get_none_of_them(echo: Echo, imported):
    for payload in ({"prompt": "Which ocean sport am I picking up?", "user": "jun"}, {"prompt": "Which ocean sport is Minji picking up?"}):
        body = echo.ask(payload).json()
        assert body["facts"] == [] and not any(m.get("fact") for m in body["memories"]), body
        assert all(m["user"] == "jun" for m in body["memories"])
    assert facts_of(echo, "minji", echo.key("jun")).status_code == 403
    assert facts_of(echo, None, None).status_code == 401
    assert (
        httpx.get(
            f"{echo.url}/api/memory/facts/{imported[SURF['text']]['id']}", params={"user": "jun"}, headers={"Authorization": f"Bearer {echo.key('jun')}"}
        ).status_code
        == 404
    )


def test_forget_that_removes_it_and_the_prompt_no_longer_carries_it(echo: Echo, imported):
    body = echo.ask({"prompt": "forget that I want replies without long stories", "user": "minji"}).json()
    assert body["route"] == "forget" and [f["text"] for f in body["forgotten"]] == [STORIES["text"]], body
    assert STORIES["text"] in body["reply"]
    after = echo.ask({"prompt": "hello there", "user": "minji"}).json()
    assert [f["text"] for f in after["facts"]] == [SURF["text"]]  # what every circuit's system prompt carries now
    listed = {f["text"] for f in facts_of(echo, "minji", echo.key("minji")).json()["facts"]}
    assert listed == {SURF["text"]}
    lines = (echo.home / "memory" / GUEST_FACT[0]).read_text(encoding="utf-8")
    assert GUEST_FACT[1] in lines  # the lines stay: they are the owner's log
    restored = httpx.post(f"{echo.url}/api/memory/facts/undo", params={"user": "minji"}, headers={"Authorization": f"Bearer {echo.key('minji')}"}).json()
    assert [f["text"] for f in restored["restored"]] == [STORIES["text"]]


def test_a_restart_keeps_every_fact_and_restore_brings_them_back(instant: Echo):
    """On the instant app, whose memory actor the fault tests kill anyway: the session Echo's
    first boot is what other tests read."""
    import ray

    from actors.memory_actor import NAMESPACE, actor_name

    said = instant.ask({"prompt": "I grow cherry tomatoes on my balcony", "user": "kai"}).json()["memory"]
    line = json.dumps(
        {
            "user": "kai",
            "text": "Kai grows cherry tomatoes on a balcony",
            "kind": "profile",
            "cites": [{k: said[k] for k in ("path", "line_start", "line_end")}],
        }
    )
    assert httpx.post(f"{instant.url}/api/memory/facts/import", content=line, headers=owner(instant), timeout=30).json()["added"] == 1
    store = instant.home / "memory_facts" / "facts.jsonl"
    assert store.is_file() and (instant.home / "memory_backup" / "facts" / "facts.jsonl").read_bytes() == store.read_bytes()
    ray.kill(ray.get_actor(actor_name(instant.home / "memory"), namespace=NAMESPACE), no_restart=False)
    wait_for(lambda: facts_of(instant, "kai", instant.token).status_code == 200, timeout=120, what="the memory actor back")
    assert [f["text"] for f in facts_of(instant, "kai", instant.token).json()["facts"]] == ["Kai grows cherry tomatoes on a balcony"]
    health = httpx.get(f"{instant.url}/health", timeout=30).json()["memory"]["facts"]
    assert health["stored"] >= 1 and health["stale"] == 0
    store.unlink()
    assert facts_of(instant, "kai", instant.token).json()["total"] == 0
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "echo_cli.py"), "restore", "--config", str(instant.home / "instant.yaml")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "facts: 1 brought back" in done.stdout, done.stdout + done.stderr
    assert [f["text"] for f in facts_of(instant, "kai", instant.token).json()["facts"]] == ["Kai grows cherry tomatoes on a balcony"]
    memory_ready(instant)
    insight = httpx.get(f"{instant.url}/api/insights", headers=owner(instant), timeout=30).json()["facts"]
    assert insight["by_person"]["kai"] == {"profile": 1}
