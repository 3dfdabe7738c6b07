"""One real Ray cluster and Serve for the whole session, with the real SmolLM2 circuits."""

from __future__ import annotations

import os
import shutil

import pytest
import yaml

from bench.common import free_port
from echo.config import REPO_ROOT
from tests.e2e.harness import TOKEN, Echo, folders, plant_sample_memory, wait_ready, write_config


@pytest.fixture(scope="session")
def echo(tmp_path_factory) -> Echo:
    import ray
    from ray import serve

    from serve_app import build_app, side_by_side, start_ray

    home = tmp_path_factory.mktemp("echo-home")
    shutil.copytree(REPO_ROOT / "manifest", home / "manifest")
    torn = home / "memory" / "day0101" / "old" / "part1.txt"  # as a crash mid-write leaves it
    torn.parent.mkdir(parents=True)
    torn.write_bytes("나의 말:\n끝까지 쓰인 줄\n".encode() + "잘린".encode()[:4])
    plant_sample_memory(home / "memory")
    port = free_port()
    config = write_config(home, port)
    previous = os.environ.get("ECHO_ORIGIN_TOKEN")
    os.environ["ECHO_ORIGIN_TOKEN"] = TOKEN  # before ray.init: the workers inherit it
    metrics_port = free_port()
    # Ports of its own, so that another Serve on this machine (a test cluster, a rehearsal, a
    # developer's Echo) neither stops this one nor shares its ingress replicas' ports.
    os.environ.update(side_by_side())
    start_ray(num_cpus=8, include_dashboard=False, _metrics_export_port=metrics_port)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"config": str(config)}), name="echo", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        health = wait_ready(url)
        assert health["status"] == "ready", health
        yield Echo(url=url, home=home, token=TOKEN, metrics_port=metrics_port)
    finally:
        serve.shutdown()
        ray.shutdown()
        if previous is None:
            os.environ.pop("ECHO_ORIGIN_TOKEN", None)
        else:
            os.environ["ECHO_ORIGIN_TOKEN"] = previous


@pytest.fixture(scope="session")
def instant(echo, tmp_path_factory) -> Echo:
    """A second app on the same cluster with instant circuits (configs/instant.yaml), so load
    and fault tests measure Echo, not the model. Tight queues: 200 requests at once must meet
    the back-pressure."""
    from ray import serve

    from serve_app import build_app

    home = tmp_path_factory.mktemp("instant-home")
    shutil.copytree(REPO_ROOT / "manifest", home / "manifest")
    data = yaml.safe_load((REPO_ROOT / "configs" / "instant.yaml").read_text(encoding="utf-8"))
    data.update(
        **folders(home),
        brain_max_ongoing_requests=8,
        brain_max_queued_requests=16,
    )
    config = home / "instant.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    serve.run(build_app({"config": str(config)}), name="instant", route_prefix="/instant")
    url = f"{echo.url}/instant"
    health = wait_ready(url)
    assert health["status"] == "ready", health
    yield Echo(url=url, home=home, token=echo.token, metrics_port=echo.metrics_port)
    serve.delete("instant")
