"""One real Ray cluster and Serve for the whole session, with the real SmolLM2 circuits."""

from __future__ import annotations

import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from core.config import DEFAULT_CONFIG, REPO_ROOT

TOKEN = "e2e-origin-token-7f3a"


@dataclass
class Echo:
    url: str
    home: Path
    token: str

    def ask(self, payload: dict, token: str | None = None, timeout: float = 180) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(f"{self.url}/api/ask", json=payload, headers=headers, timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(home: Path, port: int, **overrides) -> Path:
    data = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    for circuit in data["circuits"].values():
        circuit["max_tokens"] = 32  # short answers keep the suite quick on two cores
    data.update(port=port, memory_dir=str(home / "memory"), backup_dir=str(home / "memory_backup"),
                quarantine_dir=str(home / "memory_quarantine"), manifest_dir=str(home / "manifest"),
                projects_dir=str(home / "origin" / "projects"), **overrides)
    path = home / "echo.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def wait_ready(url: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{url}/health", timeout=10).json()
            if not health["loading"]:  # every circuit has settled: ready or failed
                return health
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"Echo at {url} was not ready within {timeout}s")


@pytest.fixture(scope="session")
def echo(tmp_path_factory) -> Echo:
    import ray
    from ray import serve

    from serve_app import build_app, start_ray

    home = tmp_path_factory.mktemp("echo-home")
    shutil.copytree(REPO_ROOT / "manifest", home / "manifest")
    torn = home / "memory" / "day0101" / "old" / "part1.txt"  # as a crash mid-write leaves it
    torn.parent.mkdir(parents=True)
    torn.write_bytes("나의 말:\n끝까지 쓰인 줄\n".encode("utf-8") + "잘린".encode("utf-8")[:4])
    port = free_port()
    config = write_config(home, port)
    previous = os.environ.get("ECHO_ORIGIN_TOKEN")
    os.environ["ECHO_ORIGIN_TOKEN"] = TOKEN  # before ray.init: the workers inherit it
    start_ray(num_cpus=8, include_dashboard=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"config": str(config)}), name="echo", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        health = wait_ready(url)
        assert health["status"] == "ready", health
        yield Echo(url=url, home=home, token=TOKEN)
    finally:
        serve.shutdown()
        ray.shutdown()
        if previous is None:
            os.environ.pop("ECHO_ORIGIN_TOKEN", None)
        else:
            os.environ["ECHO_ORIGIN_TOKEN"] = previous
