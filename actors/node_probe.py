"""Every node of a Ray cluster, asked what it holds for Echo (`echo-server doctor --address`).

A task pinned to each node runs echo.ops.doctor.node_facts there: the models and memory/ an
operator copied to one machine are not on the others, so each node must look for itself.
"""

from __future__ import annotations

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from echo.config import EchoConfig
from echo.ops.doctor import node_facts

PROBE_TIMEOUT_S = 60


@ray.remote(num_cpus=0, max_retries=0)
def _facts(config: dict) -> dict:
    return node_facts(EchoConfig.model_validate(config))


def cluster_nodes(address: str, config: EchoConfig) -> list[dict] | str:
    """The cluster's live nodes, each with its resources and what node_facts found there;
    or why the cluster cannot be reached."""
    try:
        ray.init(address=address, namespace="echo-doctor", log_to_driver=False)
    except Exception as exc:  # whatever Ray says about the address
        return f"{type(exc).__name__}: {exc}"
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        payload = config.model_dump(mode="json")
        asks = [_facts.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(payload) for n in nodes]
        ray.wait(asks, num_returns=len(asks), timeout=PROBE_TIMEOUT_S)
        found = []
        for node, ask in zip(nodes, asks, strict=True):
            try:
                facts = ray.get(ask, timeout=0)
            except Exception as exc:  # no answer in time (a node too busy), or Echo missing there
                facts = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no answer'}"}
            resources = node["Resources"]
            head = "node:__internal_head__" in resources
            found.append(
                {
                    "name": f"{node['NodeManagerAddress']} #{node['NodeID'][:8]}" + (" (head)" if head else ""),
                    "head": head,
                    "resources": {k: v for k, v in resources.items() if not k.startswith("node:")},
                    "facts": facts,
                }
            )
        return sorted(found, key=lambda n: (not n["head"], n["name"]))
    finally:
        ray.shutdown()
