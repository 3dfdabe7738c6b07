"""`echo-server rehearse` boots the A40 deployment and the cluster's (on one node) on this
machine, with the embedded model standing in for their GGUFs, asks every route once and exits
0 only when all worked. Each run starts a Ray cluster of its own in a subprocess, as a user
runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from echo.config import REPO_ROOT

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("config", ["a40.yaml", "cluster.yaml"])
def test_a_deployment_is_rehearsed_here_route_by_route(config, tmp_path):
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
