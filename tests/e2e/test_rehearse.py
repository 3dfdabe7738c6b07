"""`echo-server rehearse` boots the A40 deployment and the cluster's (on one node) on this
machine, with the embedded model standing in for their GGUFs, asks every route once and exits
0 only when all worked. Each run starts a Ray cluster of its own in a subprocess, as a user
runs it, beside the session's Echo as beside a pod's real one: the rehearsal must answer from
its own cluster only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from echo.config import REPO_ROOT

pytestmark = pytest.mark.e2e

# Where Serve binds when nobody says otherwise, each with SO_REUSEPORT: a second Serve there
# would share the first one's connections.
SERVE_FIXED_PORTS = {
    8500: "the fallback proxy's HTTP",
    9500: "the fallback proxy's gRPC",
    8404: "HAProxy's stats",
    9101: "HAProxy's metrics",
    30000: "the first ingress replica's HTTP",
    40000: "the first ingress replica's gRPC",
}


def test_echo_beside_another_serve_holds_none_of_serves_fixed_ports(echo):
    held = []
    for port, what in SERVE_FIXED_PORTS.items():
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                held.append(f"{port} ({what})")
    assert not held, f"the session's Echo (or something else on this machine) holds {', '.join(held)}: serve_app.side_by_side() must move it"


@pytest.mark.parametrize("config", ["a40.yaml", "cluster.yaml"])
def test_a_deployment_is_rehearsed_here_route_by_route(config, tmp_path, echo):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "ECHO_"))}  # its own cluster, its own owner
    run = subprocess.run(
        [sys.executable, "-m", "echo_cli", "rehearse", "--config", str(REPO_ROOT / "configs" / config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr[-3000:]
    assert "REHEARSAL of" in out and "NOT with its real models" in out and "the embedded SmolLM2 stands in" in out
    for route in (
        "boot: circuit emotion",
        "boot: circuit creation",
        "boot: circuit self",
        "boot: memory",
        "boot: distiller",
        "identity",
        "circuits",
        "project",
        "conversation",
    ):
        assert f"ok     {route}:" in out, out
    assert "rehearsal: 9 of 9 worked" in out
    assert not list(tmp_path.glob("**/part*.txt"))  # nothing written where it ran: its memory was a folder of its own, now gone
