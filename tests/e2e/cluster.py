"""A real multi-node Ray cluster on this machine, for tests/e2e/test_cluster.py.

Each node is a `ray start --block` of its own (its own raylet, ports and process group), as
an operator starts them on separate machines. The cluster keeps to a temp dir of its own,
so `ray.init()` elsewhere on this machine never finds it, and to a token of its own (Ray's
token authentication), so nothing else can join it. Stopping it ends only the process groups
it started: other Ray clusters on the machine (the session's, other people's) are left alone.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import free_port, wait_until
from serve_app import SERVE_ENVIRONMENT, side_by_side

BIN = Path(sys.executable).parent  # ray, serve and echo-server of this virtualenv
START_TIMEOUT_S = 300  # a node starts in about 20 s on two idle cores, far slower on busy ones


class NodeFailed(RuntimeError):
    """A node's `ray start` failed, or its node never joined."""


@dataclass
class Node:
    name: str
    process: subprocess.Popen
    resources: dict = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class LocalCluster:
    def __init__(self, extra_env: dict[str, str] | None = None):
        # Short: Ray's Unix sockets live under it, and their paths are limited to 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="echo-cluster-", dir="/tmp"))
        self.port = self.dashboard_port = 0  # the head's, chosen as it starts
        self.address = self.dashboard = ""
        self.http_port = free_port()  # Serve's: set when it first starts, the same for every app after
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.env = {
            **env,
            **SERVE_ENVIRONMENT,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(16),
            # Three nodes' agents starting at once on two busy cores can take a while.
            "RAY_agent_register_timeout_ms": "180000",
            # Ports of its own: another Serve on the machine holds the defaults.
            **side_by_side(),
            **(extra_env or {}),
        }
        self.nodes: list[Node] = []

    def _start(self, name: str, args: list[str], num_cpus: float, resources: dict) -> Node:
        ports = (
            "node-manager-port",
            "object-manager-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
        )
        command = [
            str(BIN / "ray"),
            "start",
            "--block",
            "--disable-usage-stats",
            f"--num-cpus={num_cpus}",
            "--num-gpus=0",
            f"--resources={json.dumps(resources)}",
            "--object-store-memory=100000000",
            "--min-worker-port=0",
            "--max-worker-port=0",
            *(f"--{p}={free_port()}" for p in ports),
            *args,
        ]
        # The node writes its log until it stops, long after this call.
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        node = Node(name, process, resources)
        self.nodes.append(node)
        return node

    def start_head(self, num_cpus: float, resources: dict) -> Node:
        def args() -> list[str]:
            self.port, self.dashboard_port = free_port(), free_port()  # fresh ones for each attempt
            self.address, self.dashboard = f"127.0.0.1:{self.port}", f"http://127.0.0.1:{self.dashboard_port}"
            return [
                "--head",
                f"--port={self.port}",
                f"--temp-dir={self.root / 'ray'}",
                "--include-dashboard=true",
                f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={free_port()}",
            ]

        return self._start_joined("head", args, num_cpus, resources, alive=1)

    def add_worker(self, name: str, num_cpus: float, resources: dict) -> Node:
        return self._start_joined(name, lambda: [f"--address={self.address}"], num_cpus, resources, alive=self.nodes_alive() + 1)

    def _start_joined(self, name: str, args, num_cpus: float, resources: dict, alive: int, attempts: int = 3) -> Node:
        for attempt in range(1, attempts + 1):
            node = self._start(name, args(), num_cpus, resources)
            try:
                self._wait_joined(node, alive)
                return node
            except NodeFailed:
                # On starved cores `ray start` gives up after 30 s without the raylet's word ("timed
                # out during startup"): what it left is ended, and it starts again.
                _kill(_tree(node.process))
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _wait_joined(self, node: Node, alive: int, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while self.nodes_alive() < alive:
            if not node.alive or time.monotonic() > deadline:
                log = (self.root / f"{node.name}.log").read_text(errors="replace")[-3000:]
                how = f"its ray start exited {node.process.poll()}" if not node.alive else f"not within {timeout}s"
                raise NodeFailed(f"node {node.name} did not join ({how}); its log ends:\n{log}")
            time.sleep(0.5)

    def remove(self, node: Node) -> None:
        """The node is gone at once, as when its machine dies: its raylet and every worker on it."""
        _kill(_tree(node.process))
        node.process.wait()

    def stop(self) -> None:
        """Everything the nodes started, and nothing else: their process trees, taken before
        any of it is killed (a killed raylet's workers would otherwise be orphaned)."""
        _kill([p for node in self.nodes for p in _tree(node.process)])
        for node in self.nodes:
            node.process.wait()
        _kill(self._strays())

    def _strays(self) -> list[int]:
        """Processes of this cluster whose `ray start` is gone: those with its folder in their
        command line (GCS, raylets, agents)."""
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and str(self.root).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    # -- asking the cluster, as an operator does ---------------------------------------

    def run(self, *command: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """A command on this cluster (RAY_ADDRESS and the token set), e.g. serve deploy."""
        env = {**self.env, "RAY_ADDRESS": self.address}
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def popen(self, *command: str, log: str) -> subprocess.Popen:
        env = {**self.env, "RAY_ADDRESS": self.address}
        out = open(self.root / log, "wb")  # noqa: SIM115
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root)

    def api(self, path: str) -> dict | list:
        """Ray's state and Serve REST APIs on the head's dashboard."""
        headers = {"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"}
        response = httpx.get(f"{self.dashboard}{path}", headers=headers, timeout=30)
        response.raise_for_status()
        return response.json()

    def nodes_alive(self) -> int:
        try:
            return sum(n["state"] == "ALIVE" for n in self.list("nodes"))
        except httpx.HTTPError:
            return 0

    def list(self, kind: str, **filters: str) -> list[dict]:
        """Ray's state API (what `ray list actors|nodes|tasks` shows), with equality filters."""
        params = "&".join(f"filter_keys={k}&filter_predicates=%3D&filter_values={v}" for k, v in filters.items())
        for _ in range(10):
            answer = self.api(f"/api/v0/{kind}?limit=10000&detail=1&{params}")["data"]["result"]
            if not answer.get("partial_failure_warning"):  # every node answered
                return answer["result"]
            time.sleep(1)
        raise AssertionError(f"the state API answers only in part: {answer['partial_failure_warning']}")

    def node_names(self) -> dict[str, str]:
        """Ray's node id -> this cluster's name for the node (head, worker-a, ...)."""
        names = {}
        for n in self.list("nodes"):
            for node in self.nodes:
                if node.resources and all(n["resources_total"].get(k) == v for k, v in node.resources.items()) and n["state"] == "ALIVE":
                    names[n["node_id"]] = node.name
        return names

    @staticmethod
    def wait(check, timeout: float, what: str):
        return wait_until(check, timeout, what, every=0.5)  # the state API is slow to ask


def _tree(process: subprocess.Popen) -> list[int]:
    """A node's `ray start` and all it started (GCS, raylet, agents, the raylet's workers), by
    parent process id from /proc: taken before any is killed, since an orphan loses its parent."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = [], [process.pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
