"""Echo on more than one machine, without one: where each part may run (config, Serve
options), and what `doctor --address` says of a cluster's nodes (echo.ops.doctor.check_nodes).
The same, on a real multi-node cluster: tests/e2e/test_cluster.py."""

from __future__ import annotations

import pytest
import yaml

import serve_app
from echo.config import REPO_ROOT, ConfigError, EchoConfig, load_config, parse_config
from echo.ops.doctor import check_nodes, node_facts

CONFIGS = REPO_ROOT / "configs"


def instant(**circuit) -> dict:
    data = yaml.safe_load((CONFIGS / "instant.yaml").read_text(encoding="utf-8"))
    for settings in data["circuits"].values():
        settings.update(circuit)
    return data


def test_the_cluster_config_is_the_a40_one_with_the_circuits_on_the_workers_and_the_brain_on_the_head():
    cluster, a40 = load_config(CONFIGS / "cluster.yaml"), load_config(CONFIGS / "a40.yaml")
    placement = {"resources", "autoscaling", "max_replicas_per_node"}
    for name, circuit in cluster.circuits.items():  # the same models and prompts: they cannot drift
        assert circuit.model_dump(exclude=placement) == a40.circuits[name].model_dump(exclude=placement)
        assert circuit.resources == {"echo_circuits": 1} and (circuit.autoscaling.min_replicas, circuit.autoscaling.max_replicas) == (1, 2)
        assert circuit.max_replicas_per_node == 1  # a second copy on another worker, never two models' copies on one GPU
    assert cluster.brain_resources == {"memory_home": 0.01} and cluster.recall.embedding_num_gpus == 0
    deploy = yaml.safe_load((CONFIGS / "serve_cluster.yaml").read_text(encoding="utf-8"))
    assert deploy["applications"][0]["args"] == {"config": "configs/cluster.yaml"} and deploy["proxy_location"] == "HeadOnly"
    ray_cluster = (REPO_ROOT / "ray_cluster.yaml").read_text(encoding="utf-8")
    assert "serve deploy configs/serve_cluster.yaml" in ray_cluster and """--resources='{"echo_circuits": 3}'""" in ray_cluster


def test_each_deployment_gets_its_resources_and_its_replica_count_or_autoscaling():
    data = instant(resources={"echo_circuits": 1})
    data["circuits"]["emotion"]["autoscaling"] = {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4, "downscale_delay_s": 30}
    data["circuits"]["self"]["replicas"] = 2
    data["circuits"]["self"]["max_replicas_per_node"] = 1
    data["brain_resources"] = {"memory_home": 0.01}
    brain = serve_app.build_from_config(parse_config(data))._bound_deployment
    assert brain.ray_actor_options["resources"] == {"memory_home": 0.01}
    circuits = {name: handle._bound_deployment for name, handle in brain.init_args[1].items()}
    assert all(c.ray_actor_options["resources"] == {"echo_circuits": 1} for c in circuits.values())
    scaling = circuits["emotion"]._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.initial_replicas, scaling.max_replicas) == (1, 1, 3)
    assert (scaling.target_ongoing_requests, scaling.downscale_delay_s) == (4, 30)
    assert circuits["self"].num_replicas == 2 and circuits["creation"].num_replicas == 1
    assert circuits["self"]._deployment_config.autoscaling_config is None
    assert circuits["self"]._replica_config.max_replicas_per_node == 1 and circuits["emotion"]._replica_config.max_replicas_per_node is None


def test_a_config_survives_the_trip_to_every_replica():
    config = load_config(CONFIGS / "cluster.yaml")
    assert EchoConfig.model_validate(config.model_dump(mode="json")) == config  # as the EchoBrain and the circuits get it


@pytest.mark.parametrize(
    "circuit, words",
    [
        ({"replicas": 2, "autoscaling": {"max_replicas": 3}}, "circuits.emotion.replicas = 2: is set beside autoscaling: leave it out"),
        ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "max_replicas (2) is below min_replicas (3): raise max_replicas"),
        ({"autoscaling": {"target": 2}}, "circuits.emotion.autoscaling.target: unknown setting"),
        ({"resources": {"GPU": 1}}, "GPU is Ray's own resource: set num_cpus or num_gpus instead"),
        ({"resources": {"echo_circuits": 0}}, "each amount must be above 0"),
    ],
)
def test_wrong_placement_settings_say_what_is_wrong_and_what_to_do(circuit, words):
    data = instant()
    data["circuits"]["emotion"].update(circuit)
    with pytest.raises(ConfigError) as error:
        parse_config(data)
    assert words in str(error.value)


def node(name: str, head: bool = False, models: bool = True, writable: bool = True, **resources) -> dict:
    facts = {
        "models": {c: {"found": models, "what": "/models/x.gguf"} for c in ("emotion", "creation", "self")},
        "memory_dir": "/workspace/echo/memory",
        "memory_writable": writable,
    }
    return {"name": name + (" (head)" if head else ""), "head": head, "resources": {"CPU": 8, **resources}, "facts": facts}


def cluster_config(**overrides) -> EchoConfig:
    data = yaml.safe_load((CONFIGS / "cluster.yaml").read_text(encoding="utf-8"))
    data.update(overrides)
    return parse_config(data)


def report(findings) -> tuple[list[str], list[str]]:
    return [f.what for f in findings if f.level == "ok"], [f"{f.what} | fix: {f.fix}" for f in findings if f.level == "error"]


def test_doctor_reports_each_node_of_a_healthy_cluster():
    nodes = [node("10.0.0.1", head=True, models=False, memory_home=1), node("10.0.0.2", GPU=1, echo_circuits=3), node("10.0.0.3", GPU=1, echo_circuits=3)]
    ok, errors = report(check_nodes(cluster_config(), nodes))
    assert errors == []
    assert (
        ok[0]
        == "node 10.0.0.1 (head): 8 CPUs, 0 GPUs, memory_home 1; models: none found, emotion, creation, self missing; the memory's home, /workspace/echo/memory writable"
    )
    assert ok[1] == "node 10.0.0.2: 8 CPUs, 1 GPUs, echo_circuits 3; models: emotion, creation, self found; not the memory's home"


def test_doctor_says_when_the_memorys_home_is_missing_or_offered_twice():
    workers = [node("10.0.0.2", GPU=1, echo_circuits=3)]
    _, missing = report(check_nodes(cluster_config(), [node("10.0.0.1", head=True), *workers]))
    assert any("no node offers memory_home" in e and """--resources='{"memory_home": 1}'""" in e for e in missing)
    _, twice = report(check_nodes(cluster_config(), [node("10.0.0.1", head=True, memory_home=1), node("10.0.0.2", GPU=1, echo_circuits=3, memory_home=1)]))
    assert any("memory_home is offered by 2 nodes (10.0.0.1 (head), 10.0.0.2)" in e and "offer it on the one node that holds memory/" in e for e in twice)
    _, alone = report(check_nodes(load_config(CONFIGS / "default.yaml"), [node("127.0.0.1", head=True)]))
    assert alone == []  # one machine: the memory is on it, wherever the actors run


def test_doctor_says_what_keeps_a_circuit_or_the_memory_from_starting():
    head = node("10.0.0.1", head=True, writable=False, memory_home=1)
    _, errors = report(check_nodes(cluster_config(), [head, node("10.0.0.2", GPU=1)]))
    assert any("circuit emotion requires {'echo_circuits': 1.0}, which no node offers" in e for e in errors)
    assert any("memory/ (/workspace/echo/memory) cannot be written on 10.0.0.1 (head)" in e for e in errors)
    _, errors = report(check_nodes(cluster_config(), [node("10.0.0.1", head=True, memory_home=1), node("10.0.0.2", models=False, GPU=1, echo_circuits=3)]))
    assert any("circuit self can run on 10.0.0.2, which lack its model" in e and "copy the model there" in e for e in errors)
    a40 = load_config(CONFIGS / "a40.yaml")  # embeddings on the GPU: the MemoryActor needs one where it lives
    _, errors = report(check_nodes(a40, [node("10.0.0.1", head=True, memory_home=1), node("10.0.0.2", GPU=1)]))
    assert any("recall.embedding_num_gpus = 0.01" in e and "the memory's home has no GPU" in e for e in errors)


def test_each_node_looks_for_the_models_and_memory_folder_itself(tmp_path):
    data = yaml.safe_load((CONFIGS / "default.yaml").read_text(encoding="utf-8"))
    data["circuits"]["creation"]["model"] = str(tmp_path / "missing.gguf")
    data["memory_dir"] = str(tmp_path / "not" / "yet" / "memory")
    facts = node_facts(parse_config(data))
    assert facts["models"]["emotion"]["found"] and facts["models"]["emotion"]["what"].endswith(".gguf")
    assert not facts["models"]["creation"]["found"] and "missing.gguf" in facts["models"]["creation"]["what"]
    assert facts["memory_writable"] is True  # Echo makes the folders below one it can write
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    data["memory_dir"] = str(tmp_path / "a-file" / "memory")
    assert node_facts(parse_config(data))["memory_writable"] is False


def test_a_circuit_held_to_other_nodes_looks_for_its_model_there_not_where_the_app_is_built(tmp_path):
    data = yaml.safe_load((CONFIGS / "default.yaml").read_text(encoding="utf-8"))
    data["circuits"]["self"]["model"] = str(tmp_path / "only-on-the-workers.gguf")
    with pytest.raises(ConfigError, match="only-on-the-workers.gguf"):
        serve_app.build_from_config(parse_config(data))  # on one machine: missing, said at once
    data["circuits"]["self"]["resources"] = {"echo_circuits": 1}
    circuits = serve_app.build_from_config(parse_config(data))._bound_deployment.init_args[1]
    name, _, model_path = circuits["self"]._bound_deployment.init_args
    assert name == "self" and model_path is None  # its replica looks on its own node (and doctor --address on each)
    assert circuits["emotion"]._bound_deployment.init_args[2].endswith(".gguf")
