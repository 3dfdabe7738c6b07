"""Echo on a real multi-node Ray cluster: a head and two workers on this machine, each its own
raylet (tests/e2e/cluster.py), deployed as an operator does, then a worker lost and the
circuits autoscaled. Placement is read from Ray's state API and Serve's REST API.

The head offers `memory_home` (the memory, its watchdog, their replay tasks and the EchoBrain
go there), the workers `echo_circuits` (the circuits go there), as ray_cluster.yaml's nodes do,
and Echo takes those placements from configs/cluster.yaml.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from actors.memory_actor import actor_name, watchdog_name
from bench.common import free_port
from bench.load import saved_prompts
from echo.config import REPO_ROOT
from serve_app import deployment_name
from tests.e2e.cluster import BIN, LocalCluster, Node
from tests.e2e.harness import CAT_FACT, TOKEN, plant_sample_memory, sse_events

pytestmark = pytest.mark.e2e

CIRCUITS = ("emotion", "creation", "self")
SHIPPED = yaml.safe_load((REPO_ROOT / "configs" / "cluster.yaml").read_text(encoding="utf-8"))
WORKERS = {"worker-a": {"echo_circuits": 4, "worker_a": 1}, "worker-b": {"echo_circuits": 4, "worker_b": 1}}


@pytest.fixture(scope="module")
def cluster():
    cluster = LocalCluster(extra_env={"ECHO_ORIGIN_TOKEN": TOKEN})
    try:
        cluster.start_head(num_cpus=1, resources={"memory_home": 1})
        for name, resources in WORKERS.items():
            cluster.add_worker(name, num_cpus=2, resources=resources)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


def echo_config(cluster: LocalCluster, name: str, base: str, port: int | None = None) -> Path:
    """base's circuits (SmolLM2 or instant) placed as configs/cluster.yaml places them, with
    autoscaling delays of seconds instead of minutes, in a home of its own."""
    home = cluster.root / name
    shutil.copytree(REPO_ROOT / "manifest", home / "manifest")
    plant_sample_memory(home / "memory")
    data = yaml.safe_load((REPO_ROOT / "configs" / base).read_text(encoding="utf-8"))
    data.update(
        host="127.0.0.1",
        port=port or cluster.http_port,
        memory_dir=str(home / "memory"),
        manifest_dir=str(home / "manifest"),
        projects_dir=str(home / "projects"),
        recall={"embedding_model": "off"},  # lexical recall: two cores are enough for the circuits
        brain_resources=SHIPPED["brain_resources"],
    )
    for circuit, settings in data["circuits"].items():
        shipped = SHIPPED["circuits"][circuit]
        settings.update(
            resources=shipped["resources"],
            max_replicas_per_node=shipped["max_replicas_per_node"],
            autoscaling={**shipped["autoscaling"], "upscale_delay_s": 2, "downscale_delay_s": 10},
            max_tokens=24,
            timeout_s=90,
        )
    path = home / "echo.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def where(cluster: LocalCluster, memory_dir: Path, app: str = "echo", timeout: float = 120) -> dict[str, list[str]]:
    """Which node (head, worker-a, worker-b) each of Echo's live actors runs on, from Ray's state
    API, once all are alive (a replica Serve replaces, say after a failed health check on a busy
    machine, is briefly not)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _where(cluster, memory_dir, app)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _where(cluster: LocalCluster, memory_dir: Path, app: str) -> dict[str, list[str]]:
    names = cluster.node_names()
    kinds = {
        actor_name(memory_dir): "MemoryActor",
        watchdog_name(memory_dir): "WatchdogActor",
        **{f"ServeReplica:{app}:{deployment_name(c)}": c for c in CIRCUITS},
        f"ServeReplica:{app}:EchoBrain": "EchoBrain",
    }
    found: dict[str, list[str]] = {}
    actors = cluster.list("actors", state="ALIVE")
    for actor in actors:
        kind = kinds.get(actor["name"]) or kinds.get(actor["class_name"])
        if kind:
            found.setdefault(kind, []).append(names.get(actor["node_id"], actor["node_id"]))
    assert set(kinds.values()) <= found.keys(), f"not all of Echo's actors are alive: {found}; alive: {[(a['class_name'], a['name']) for a in actors]}"
    return found


def running_replicas(cluster: LocalCluster, app: str = "echo") -> dict[str, list[str]]:
    """Each circuit's RUNNING replicas, by node name, from Serve's REST API."""
    names = cluster.node_names()
    deployments = cluster.api("/api/serve/applications/")["applications"][app]["deployments"]
    return {c: sorted(names.get(r["node_id"], r["node_id"]) for r in deployments[deployment_name(c)]["replicas"] if r["state"] == "RUNNING") for c in CIRCUITS}


def every_circuit_running(cluster: LocalCluster) -> dict[str, list[str]] | None:
    replicas = running_replicas(cluster)
    return replicas if all(replicas.values()) else None


def finds(url: str, fact: tuple[str, str]) -> bool:
    """Whether the owner's search finds fact (path, text) among its first five."""
    try:
        response = httpx.get(f"{url}/api/memory/search", params={"q": fact[1], "k": 5}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and any(m["path"] == fact[0] for m in response.json()["results"])


def ask(url: str, prompt: str, user: str = "origin", timeout: float = 180) -> dict:
    response = httpx.post(f"{url}/api/ask", json={"prompt": prompt, "user": user}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=timeout)
    assert response.status_code == 200, response.text
    return response.json()


def test_echo_server_serve_joins_the_cluster_and_each_part_runs_where_the_cluster_says(cluster):
    config = echo_config(cluster, "instant", "instant.yaml")
    memory = config.parent / "memory"
    server = cluster.popen(str(BIN / "echo-server"), "serve", "--address", cluster.address, "--config", str(config), log="echo-server.log")
    try:
        url = f"http://127.0.0.1:{cluster.http_port}"
        ready(cluster, url)
        placed = where(cluster, memory)
        print(f"\nwhere each actor ran (echo-server serve --address, instant circuits): {placed}")
        assert placed["MemoryActor"] == ["head"] and placed["WatchdogActor"] == ["head"] and placed["EchoBrain"] == ["head"]
        assert all(placed[c] and set(placed[c]) <= {"worker-a", "worker-b"} for c in CIRCUITS), placed
        # The first replay read memory/ with Ray Data: its read tasks ran on the head, beside memory/.
        # (Ray reports task events a little late: a finished task may still be listed unplaced.)
        reads = cluster.wait(lambda: read_tasks_placed(cluster), 60, "Ray's task list to show where the replay's reads ran")
        assert {cluster.node_names().get(t["node_id"]) for t in reads} == {"head"}, [(t["name"], t["node_id"]) for t in reads]

        # An answer's recall gives up after 3 s, and just after a start on a busy host a search
        # can take longer (a clean-clone run's answer came without memories): ask once the
        # memory answers a search.
        cluster.wait(lambda: finds(url, CAT_FACT), 60, "the memory to find the cat fact")
        answer = ask(url, "내 고양이 이름이 뭐였지? 보호소에서 입양했는데")
        assert answer["degraded"] is False and answer["saved"] is True, answer
        assert any(m["path"] == CAT_FACT[0] for m in answer["memories"]), answer["memories"]
        saved = memory / answer["memory"]["path"]
        assert "내 고양이 이름이 뭐였지?" in saved.read_text(encoding="utf-8")
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C: the app is deleted, the cluster stays
        assert server.wait(timeout=120) == 0, (cluster.root / "echo-server.log").read_text(errors="replace")[-3000:]
    assert "echo" not in cluster.api("/api/serve/applications/")["applications"]
    # Its detached memory actors went with it: a later start makes them anew with its own config.
    alive = {a["name"] for a in cluster.list("actors", state="ALIVE")}
    assert not alive & {actor_name(memory), watchdog_name(memory)}, alive


def read_tasks_placed(cluster: LocalCluster) -> list[dict]:
    """The replay's Ray Data read tasks, once Ray lists each with the node it ran on."""
    reads = [t for t in cluster.list("tasks") if "_read_batch" in t["name"]]
    return reads if reads and all(t["node_id"] for t in reads) else []


@pytest.fixture(scope="module")
def smollm2(cluster) -> str:
    """Echo with the real SmolLM2 circuits, deployed with `serve deploy` and the serve config
    ray_cluster.yaml points to (configs/serve_cluster.yaml), its port and Echo config changed."""
    config = echo_config(cluster, "smollm2", "default.yaml")
    deploy = yaml.safe_load((REPO_ROOT / "configs" / "serve_cluster.yaml").read_text(encoding="utf-8"))
    deploy["http_options"] = {"host": "127.0.0.1", "port": cluster.http_port}
    deploy["applications"][0]["args"]["config"] = str(config)
    serve_file = config.parent / "serve.yaml"
    serve_file.write_text(yaml.safe_dump(deploy), encoding="utf-8")
    cluster.run(str(BIN / "serve"), "deploy", str(serve_file), "--address", cluster.dashboard)
    url = f"http://127.0.0.1:{cluster.http_port}"
    ready(cluster, url)
    return url


def ready(cluster: LocalCluster, url: str) -> None:
    """Until /health says every circuit is ready, not only settled as the single-node
    harness's wait_ready asks, and the first replay of memory/ is done."""

    def health() -> bool:
        try:
            state = httpx.get(f"{url}/health", timeout=10).json()
        except (httpx.HTTPError, ValueError):
            return False
        return state.get("status") == "ready" and state["memory"].get("replay", {}).get("state") == "ready"

    cluster.wait(health, 300, f"Echo at {url} to be ready")


def test_serve_deploy_puts_the_smollm2_circuits_on_the_workers_and_answers(cluster, smollm2):
    memory = cluster.root / "smollm2" / "memory"
    placed = where(cluster, memory)
    print(f"\nwhere each actor ran (serve deploy, SmolLM2): {placed}")
    assert placed["MemoryActor"] == ["head"] and placed["WatchdogActor"] == ["head"] and placed["EchoBrain"] == ["head"]
    assert all(len(placed[c]) == 1 and placed[c][0] in WORKERS for c in CIRCUITS), placed
    answer = ask(smollm2, "Hello! How are you today?", user="minji")
    assert answer["degraded"] is False and answer["saved"] is True, answer
    assert all(answer["circuits"][c]["completion_tokens"] > 0 for c in CIRCUITS), answer["circuits"]
    assert "Hello! How are you today?" in (memory / answer["memory"]["path"]).read_text(encoding="utf-8")


class Streams:
    """Clients that keep asking, streamed, until stopped; every outcome kept with its times."""

    def __init__(self, url: str, user: str, clients: int):
        self.url, self.user, self.stop = url, user, threading.Event()
        self.outcomes: list[dict] = []
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)]
        for thread in self.threads:
            thread.start()

    def _client(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            prompt = f"{self.user} {n}-{i}: 오늘 하루 어땠는지 짧게 말해줘"
            i += 1
            started = time.monotonic()
            outcome = {"prompt": prompt, "started": started}
            try:
                with httpx.stream(
                    "POST",
                    f"{self.url}/api/ask",
                    json={"prompt": prompt, "user": self.user, "stream": True},
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=180,
                ) as response:
                    outcome["status"] = response.status_code
                    if response.status_code == 200:
                        events = list(sse_events(response))
                        outcome["event"], outcome["body"] = events[-1] if events else (None, None)
                    else:
                        response.read()
                        outcome["retry_after"] = response.headers.get("retry-after")
                        outcome["body"] = response.json()
            except httpx.HTTPError as exc:
                outcome["status"] = type(exc).__name__
            outcome["ended"] = time.monotonic()
            self.outcomes.append(outcome)

    def finish(self) -> list[dict]:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=200)
        return self.outcomes

    def whole_after(self, moment: float) -> list[dict]:
        return [o for o in list(self.outcomes) if o["started"] > moment and o.get("event") == "done" and not o["body"]["degraded"]]


def test_autoscaling_adds_a_replica_on_the_other_worker_under_load_and_removes_it_when_idle(cluster, smollm2):
    timeline: list[tuple[float, dict[str, int]]] = []
    start = time.monotonic()

    def observe() -> dict[str, list[str]]:
        replicas = running_replicas(cluster)
        counts = {c: len(nodes) for c, nodes in replicas.items()}
        if not timeline or timeline[-1][1] != counts:
            timeline.append((round(time.monotonic() - start, 1), counts))
        return replicas

    cluster.wait(lambda: all(len(nodes) == 1 for nodes in observe().values()), 120, "one running replica of each circuit")
    # Four at a time: above the creation circuit's target (2 per replica, its slots), within the others' (4).
    load = Streams(smollm2, "load", clients=4)
    try:
        spread = cluster.wait(
            lambda: [c for c, nodes in observe().items() if len(nodes) == 2 and set(nodes) == set(WORKERS)], 180, "a second replica under load"
        )
    finally:
        outcomes = load.finish()
    # Each one answered: a reply, or (two busy cores can outlast a circuit's timeout) Echo's error saying why.
    assert all(_kind(o) in ("whole", "degraded", "503", "200 error") for o in outcomes), [o for o in outcomes if _kind(o) not in ("whole", "degraded")][:3]
    assert all(o["body"]["error"]["code"] for o in outcomes if _kind(o) in ("503", "200 error"))
    cluster.wait(lambda: all(n == 1 for n in {c: len(v) for c, v in observe().items()}.values()), 180, "the extra replicas to go when idle")
    print(f"\nreplicas per circuit over the autoscaling run (seconds: counts): {timeline}; spread over both workers: {spread}; {len(outcomes)} answers")
    assert max(max(counts.values()) for _, counts in timeline) == 2  # max_replicas, never more


def test_a_worker_node_lost_while_requests_stream_loses_no_save_and_the_circuits_come_back(cluster, smollm2):
    memory = cluster.root / "smollm2" / "memory"
    before = cluster.wait(lambda: every_circuit_running(cluster), 120, "a running replica of each circuit")
    held = Counter(node for nodes in before.values() for node in nodes)
    victim: Node = next(n for n in cluster.nodes if n.name == max(WORKERS, key=lambda w: held[w]))
    survivor = next(w for w in WORKERS if w != victim.name)
    streams = Streams(smollm2, "faults", clients=2)
    try:
        cluster.wait(lambda: len(streams.outcomes) >= 2, 180, "the first streamed answers")
        removed = time.monotonic()
        cluster.remove(victim)
        recovered = cluster.wait(lambda: min((o["ended"] for o in streams.whole_after(removed)), default=None), 300, "a whole answer after the node loss")
        back = cluster.wait(lambda: all(nodes == [survivor] for nodes in running_replicas(cluster).values()), 240, "every circuit on the other worker")
        settled = time.monotonic()
        cluster.wait(lambda: len(streams.whole_after(settled)) >= 2, 180, "answers after recovery")
    finally:
        outcomes = streams.finish()
    recovery_s = recovered - removed
    print(
        f"\nlost {victim.name} holding {held[victim.name]} circuit replicas ({before}); first whole answer {recovery_s:.1f}s after; "
        f"outcomes: {Counter(_kind(o) for o in outcomes)}"
    )
    assert back
    for o in outcomes:  # every request answered: whole, naming what failed, or (none answered) when to retry
        assert _kind(o) in ("whole", "degraded", "503", "200 error"), o
        if _kind(o) == "degraded":
            assert o["body"]["failed"] and o["body"]["reply"], o
        if _kind(o) == "503":
            assert o["retry_after"], o
        if _kind(o) == "200 error":  # every circuit failed after the stream began
            assert o["body"]["failed"] and o["body"]["retry_after"], o
    assert all(_kind(o) == "whole" for o in outcomes if o["started"] > settled), [o for o in outcomes if o["started"] > settled]
    counts, problems = saved_prompts(memory, "faults")
    assert problems == []  # no torn line, every exchange whole
    acknowledged = [o["prompt"] for o in outcomes if o.get("event") == "done" and o["body"]["saved"]]
    assert acknowledged and all(counts[p] == 1 for p in acknowledged), {p: counts[p] for p in acknowledged if counts[p] != 1}
    assert placed_on_head(cluster, memory)


def placed_on_head(cluster: LocalCluster, memory: Path) -> bool:
    placed = where(cluster, memory)
    return placed["MemoryActor"] == ["head"] and placed["WatchdogActor"] == ["head"] and placed["EchoBrain"] == ["head"]


def _kind(outcome: dict) -> str:
    if outcome.get("event") == "done":
        return "degraded" if outcome["body"]["degraded"] else "whole"
    if outcome.get("status") == 503:
        return "503"
    return f"{outcome.get('status')} {outcome.get('event')}"


def test_doctor_reports_each_node_and_a_memory_home_offered_twice(cluster, smollm2):
    config = echo_config(cluster, "doctor", "default.yaml", free_port())
    doctor = (str(BIN / "echo-server"), "doctor", "--address", cluster.address, "--config", str(config), "--metrics-port", str(free_port()))
    report = cluster.run(*doctor, check=False)
    print(f"\n{report.stdout}")
    lines = report.stdout.splitlines()
    head = [line for line in lines if "(head)" in line]
    workers = [line for line in lines if "echo_circuits 4" in line]
    assert report.returncode == 0, report.stdout + report.stderr
    assert len(head) == 1 and "memory_home 1" in head[0] and "the memory's home" in head[0] and "writable" in head[0]
    alive = sum(1 for n in cluster.nodes if n.alive and n.name in WORKERS)
    assert len(workers) == alive and all("models: emotion, creation, self found" in w and "not the memory's home" in w for w in workers), lines

    rogue = cluster.add_worker("rogue", num_cpus=0, resources={"memory_home": 1, "rogue": 1})
    try:
        report = cluster.run(*doctor, check=False)
    finally:
        cluster.remove(rogue)
    assert report.returncode == 1 and "ERROR memory_home is offered by 2 nodes" in report.stdout, report.stdout
