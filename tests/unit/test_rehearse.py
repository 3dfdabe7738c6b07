"""`rehearse`: how a deployment's config is made to boot on this machine, and how each route is
judged. The boot itself runs in tests/e2e/test_rehearse.py with configs/a40.yaml and cluster.yaml."""

from __future__ import annotations

from pathlib import Path

from echo.config import EMBEDDED_MODEL, MEMORY_HOME, REPO_ROOT, load_config
from echo.ops.rehearse import ray_resources, rehearsal_config, run_checks


def test_the_a40_config_boots_here_with_stand_ins_said_loudly_and_nothing_else_changed(tmp_path):
    a40 = load_config(REPO_ROOT / "configs" / "a40.yaml")
    rehearsed, notes = rehearsal_config(a40, tmp_path, 18000)
    assert all(c.model == EMBEDDED_MODEL and c.num_gpus == 0 and c.n_gpu_layers == 0 for c in rehearsed.circuits.values())
    assert [c.n_parallel for c in rehearsed.circuits.values()] == [4, 2, 4] and {c.n_ctx for c in rehearsed.circuits.values()} == {4096}
    assert (
        rehearsed.merge == "synthesize"
        and rehearsed.distill.enabled
        and rehearsed.recall == a40.recall.model_copy(update={"embedding_num_gpus": 0.0, "embedding_n_gpu_layers": 0})
    )
    assert (rehearsed.host, rehearsed.port) == ("127.0.0.1", 18000)
    assert rehearsed.memory_dir == tmp_path / "memory" and rehearsed.facts_dir == tmp_path / "memory_facts" and rehearsed.projects_dir == tmp_path / "projects"
    said = "\n".join(notes)
    for circuit in ("emotion", "creation", "self"):
        assert f"circuit {circuit}: {a40.circuits[circuit].model} is not here: the embedded SmolLM2 stands in" in said
    assert "multilingual-e5-small-q8_0.gguf is not here" in said and "no GPU found" in said and "not 0.0.0.0:8000" in said


def test_a_model_that_is_there_is_kept(tmp_path):
    model = tmp_path / "mine.gguf"
    model.write_bytes(b"GGUF")
    data = load_config(REPO_ROOT / "configs" / "a40.yaml")
    data = data.model_copy(update={"circuits": {**data.circuits, "self": data.circuits["self"].model_copy(update={"model": str(model)})}})
    rehearsed, notes = rehearsal_config(data, tmp_path, 18000)
    assert rehearsed.circuits["self"].model == str(model) and not any("circuit self" in n for n in notes)


def test_the_cluster_config_on_one_node_gets_the_resources_its_replicas_ask_for(tmp_path):
    cluster, _ = rehearsal_config(load_config(REPO_ROOT / "configs" / "cluster.yaml"), tmp_path, 18000)
    needed = ray_resources(cluster)
    assert needed["echo_circuits"] == 3  # one replica of each circuit at the start, one echo_circuits each
    assert needed[MEMORY_HOME] >= 1


def test_each_route_is_judged_by_what_a_user_would_check():
    said = []

    def post(path: str, body: dict, token: str | None) -> dict:
        said.append(body)
        prompt = body["prompt"]
        if prompt.startswith("Who"):
            return {"route": "identity", "reply": "I am Echo.", "failed": []}
        if prompt.startswith("make"):
            return {"route": "circuits", "reply": "sure", "failed": []}  # a project request that went the wrong way
        if "conversation" in body:
            return {"route": "circuits", "reply": "Jeju", "failed": [], "context": [{"prompt": "trip"}]}
        return {"route": "circuits", "reply": "Have fun", "failed": [], "conversation": "c1"}

    checks = {c.route: c for c in run_checks(post, "token")}
    assert checks["identity"].ok and checks["circuits"].ok and checks["conversation"].ok
    assert not checks["project"].ok
    assert "took the 'circuits' path, not 'create_project'" in checks["project"].detail
    assert said[-1]["conversation"] == "c1"


def test_a_route_that_errors_is_a_failure_with_the_error(tmp_path: Path):
    def post(path: str, body: dict, token: str | None) -> dict:
        raise RuntimeError("HTTP 503: all_circuits_failed")

    checks = run_checks(post, "token")
    assert [c.route for c in checks] == ["identity", "circuits", "project"] and not any(c.ok for c in checks)
    assert "HTTP 503" in checks[0].detail
