"""The pod launcher and the cluster configs, checked without a pod or a cluster."""

from __future__ import annotations

import os
import subprocess

import yaml

import serve_app
from echo.config import REPO_ROOT

LAUNCHER = REPO_ROOT / "runpod_launcher.sh"


def test_the_launcher_is_valid_bash_and_its_dry_run_says_every_step(tmp_path):
    assert subprocess.run(["bash", "-n", str(LAUNCHER)]).returncode == 0
    env = {**os.environ, "WORKSPACE": str(tmp_path / "workspace"), "ECHO_ORIGIN_TOKEN": "launcher-secret-42"}
    result = subprocess.run(["bash", str(LAUNCHER), "--dry-run"], env=env, capture_output=True, text=True, timeout=60)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    venv = tmp_path / "workspace" / "echo-venv"
    assert f"+ env ECHO_CUDA=1 bash {REPO_ROOT}/scripts/setup.sh {venv}" in out
    assert f"+ {venv}/bin/echo-server doctor --config {REPO_ROOT}/configs/a40.yaml" in out
    assert f"+ {venv}/bin/echo-server plan --config {REPO_ROOT}/configs/a40.yaml --gpu-gb 48" in out
    assert f"serve --config {REPO_ROOT}/configs/a40.yaml --host 0.0.0.0 --port 8000" in out
    assert "memory.replay.state = ready" in out and "ECHO_ORIGIN_TOKEN is set" in out
    assert "launcher-secret-42" not in out + result.stderr and not (tmp_path / "workspace").exists()
    unknown = subprocess.run(["bash", str(LAUNCHER), "--yes"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown option: --yes" in unknown.stderr


def test_the_cluster_config_passes_rays_own_schema_and_sets_up_like_the_launcher():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO_ROOT / "ray_cluster.yaml").read_text(encoding="utf-8"))
    validate_config(prepare_config(config))  # as `ray up` does: raises on a field Ray does not know or a wrong type
    assert config["provider"]["type"] == "local" and config["file_mounts"] == {"/workspace/echo": ".", "~/.ray/auth_token": "~/.ray/auth_token"}
    assert any("ECHO_CUDA=1 bash scripts/setup.sh /workspace/echo-venv" in c for c in config["setup_commands"])
    head, worker = " ".join(config["head_start_ray_commands"]), " ".join(config["worker_start_ray_commands"])
    assert "ray start --head" in head and "--address=$RAY_HEAD_IP:6379" in worker and "memory_home" in head
    for name, value in serve_app.SERVE_ENVIRONMENT.items():  # Echo's Serve settings on every node
        assert f"{name}={value}" in head and f"{name}={value}" in worker


def test_the_serve_configs_are_what_serve_deploy_accepts():
    from ray.serve.schema import ServeDeploySchema

    for name, config_file in (("serve.yaml", "configs/default.yaml"), ("serve_a40.yaml", "configs/a40.yaml")):
        schema = ServeDeploySchema.model_validate(yaml.safe_load((REPO_ROOT / "configs" / name).read_text(encoding="utf-8")))
        (app,) = schema.applications
        module, attribute = app.import_path.split(":")
        assert module == "serve_app" and hasattr(serve_app, attribute)
        # Deployment settings come from the Echo config alone, so the two can never drift.
        assert not app.deployments and app.args == {"config": config_file}
