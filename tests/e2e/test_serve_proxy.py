"""Echo run as Serve users run it, behind Serve's own Python proxy (no throughput-optimized
mode, no HAProxy): a real client sending a body far over the limit reads its 413, and Echo
stays healthy. The same under `echo-server serve`'s HAProxy is in test_serving.py."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request

import httpx
import pytest
import yaml

from echo.config import REPO_ROOT
from tests.e2e.cluster import BIN, LocalCluster
from tests.e2e.harness import folders

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def plain_serve():
    """`serve run serve_app:build_app` on a Ray cluster of its own, started as Serve's docs start it."""
    cluster = LocalCluster(extra_env={"RAY_SERVE_THROUGHPUT_OPTIMIZED": "0", "RAY_SERVE_ENABLE_HA_PROXY": "0"})
    server = None
    try:
        cluster.start_head(num_cpus=2, resources={})
        home = cluster.root / "echo"
        shutil.copytree(REPO_ROOT / "manifest", home / "manifest")
        data = yaml.safe_load((REPO_ROOT / "configs" / "instant.yaml").read_text(encoding="utf-8"))
        data.update(**folders(home), host="127.0.0.1", port=cluster.http_port, recall={"embedding_model": "off"})
        config = home / "echo.yaml"
        config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        cluster.run(str(BIN / "serve"), "start", "--address", cluster.address, "--http-host", "127.0.0.1", "--http-port", str(cluster.http_port))
        server = cluster.popen(
            str(BIN / "serve"), "run", "--address", cluster.address, "--app-dir", str(REPO_ROOT), "serve_app:build_app", f"config={config}", log="serve-run.log"
        )
        url = f"http://127.0.0.1:{cluster.http_port}"

        def up():
            try:
                return httpx.get(f"{url}/health", timeout=5).json()["status"] == "ready"
            except (httpx.HTTPError, ValueError, KeyError):
                return False

        cluster.wait(up, 240, "Echo under `serve run`")
        yield url
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.mark.parametrize("megabytes", [10, 30, 100])
def test_a_huge_body_gets_its_413_under_serves_own_proxy(plain_serve, megabytes):
    body = json.dumps({"prompt": "x" * (megabytes * 1024 * 1024)}).encode()
    for path in ("/api/ask", "/v1/chat/completions"):
        request = urllib.request.Request(f"{plain_serve}{path}", data=body, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:  # an answer, not "Connection reset by peer"
            urllib.request.urlopen(request, timeout=120)
        assert refused.value.code == 413, path
    assert httpx.get(f"{plain_serve}/health", timeout=30).json()["status"] == "ready"
