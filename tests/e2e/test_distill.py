"""The distiller end to end, with Ray and SmolLM2 in the self circuit: an app of its own with
distill enabled distills a small memory after its boot replay, answers an ask meanwhile,
resumes after its MemoryActor is killed mid-job, and distills a part dropped in later. Every
stored fact cites lines that exist; no window is distilled twice."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest
import yaml

from echo.config import DEFAULT_CONFIG, REPO_ROOT
from tests.e2e.harness import Echo, folders, owner, wait_for, wait_ready

pytestmark = pytest.mark.e2e

TALKS = [
    [("I moved to Busan last month for a job at a bakery.", "How do you like Busan?"), ("I love the sea here. My cat Mocha hates the flat.", "Cats adapt.")],
    [("My sister Hana is a marine biologist in Vancouver.", "What a job!"), ("I visit her every summer.", "Lovely.")],
    [("I started learning the cello on Sundays.", "A lovely instrument."), ("Please keep your answers short.", "Sure.")],
    [("I am allergic to peanuts.", "Good to know."), ("My favourite food is kimchi stew.", "Warming!")],
]


PARTS = 6
WINDOWS = 2 * PARTS


def part_text(talk: list[tuple[str, str]]) -> str:
    return "".join(f"나의 말:\n{q}\nChatGPT의 말:\n{a}\n" for q, a in talk)


def distill_state(app: Echo) -> dict:
    """/health's memory.distill; {} while the MemoryActor restarts (its health is then an error)."""
    return httpx.get(f"{app.url}/health", timeout=30).json()["memory"].get("distill") or {}


def ledger(app: Echo) -> list[dict]:
    path = app.home / "memory_facts" / "distilled.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] if path.is_file() else []


@pytest.fixture(scope="module")
def distilling(echo: Echo, tmp_path_factory) -> Echo:
    from ray import serve

    from serve_app import build_app

    home = tmp_path_factory.mktemp("distill-home")
    shutil.copytree(REPO_ROOT / "manifest", home / "manifest")
    for n in range(PARTS):  # a window at a time: long enough to be stopped halfway
        path = home / "memory" / f"day03{n // len(TALKS) + 1:02d}" / "origin" / f"part{n % len(TALKS) + 1}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(part_text(TALKS[n % len(TALKS)]), encoding="utf-8")
    data = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    for name in ("emotion", "creation"):  # instant: the two cores are the self circuit's, which distills
        data["circuits"][name]["engine"] = "echo"
    data["circuits"]["self"]["max_tokens"] = 32
    data.update(**folders(home), distill={"enabled": True, "window_turns": 2, "max_tokens": 200, "known_facts": 4, "slots": 1})
    config = home / "distill.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    serve.run(build_app({"config": str(config)}), name="distill", route_prefix="/distill")
    app = Echo(url=f"{echo.url}/distill", home=home, token=echo.token, metrics_port=echo.metrics_port)
    assert wait_ready(app.url)["status"] == "ready"
    yield app
    serve.delete("distill")
    from actors.memory_actor import release_memory_actors

    release_memory_actors(home / "memory")


def test_the_memory_is_distilled_through_the_self_circuit_resuming_after_a_restart_and_answering_meanwhile(distilling: Echo):
    import ray

    from actors.memory_actor import NAMESPACE, actor_name

    wait_for(lambda: ledger(distilling), 300, "a first window recorded")
    answer = distilling.ask({"prompt": "Where do I live now?"}, token=distilling.token)
    assert answer.status_code == 200 and answer.json()["reply"]  # asked while the first distillation runs
    halfway = distill_state(distilling)
    assert halfway["state"] == "distilling" and halfway["circuit"] == "self" and len(ledger(distilling)) < WINDOWS, halfway
    ray.kill(ray.get_actor(actor_name(distilling.home / "memory"), namespace=NAMESPACE), no_restart=False)  # mid-job
    done = wait_for(lambda: (s := distill_state(distilling)).get("state") == "done" and s["windows_left"] == 0 and s, 900, "the job finished after the restart")
    keys = [entry["key"] for entry in ledger(distilling)]
    assert len(keys) == len(set(keys)) == WINDOWS == done["windows_done"]  # every window once: none twice, none skipped
    assert done["windows_open"] == 1  # the exchange just asked is a conversation still going: it waits

    facts = [json.loads(line) for line in (distilling.home / "memory_facts" / "facts.jsonl").read_text(encoding="utf-8").splitlines()]
    distilled = [f for f in facts if f["source"] == "distilled"]
    assert distilled, "SmolLM2 held to the schema wrote no fact at all"
    for fact in distilled:
        for cite in fact["cites"]:
            lines = (distilling.home / "memory" / cite["path"]).read_text(encoding="utf-8").split("\n")
            assert 1 <= cite["line_start"] <= cite["line_end"] <= len(lines), fact
    listed = httpx.get(f"{distilling.url}/api/memory/facts", headers=owner(distilling), timeout=30).json()
    assert listed["total"] == len([f for f in facts if not f.get("deleted")])  # the owner sees what was written


def test_a_part_dropped_in_later_is_distilled(distilling: Echo):
    wait_for(lambda: distill_state(distilling).get("state") == "done", 900, "the first distillation done")
    new = distilling.home / "memory" / "day0401" / "origin" / "part1.txt"
    new.parent.mkdir(parents=True, exist_ok=True)
    new.write_text(part_text([("My brother Joon just opened a ramen shop in Daegu.", "Congratulations to him!")]), encoding="utf-8")
    wait_for(lambda: any(e["path"] == "day0401/origin/part1.txt" for e in ledger(distilling)), 300, "the new part's window distilled")
    state = wait_for(lambda: (s := distill_state(distilling)).get("state") == "done" and s, 120, "the distiller idle again")
    assert state["windows_left"] == 0 and state["windows_done"] == WINDOWS + 1


def test_the_distillers_progress_is_in_the_metrics(distilling: Echo):
    def exported():
        text = httpx.get(f"http://127.0.0.1:{distilling.metrics_port}/metrics", timeout=10).text
        return "echo_distill_windows" in text and 'kind="done"' in text and "echo_distill_tokens_per_second" in text

    wait_for(exported, timeout=60, what="the distiller's metrics (Ray exports them every few seconds)")
