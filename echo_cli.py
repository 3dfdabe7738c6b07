"""The `echo-server` command line."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import urllib.request

import click

from core.auth import ENABLE_HINT, origin_token
from core.config import CONFIG_ENV, ConfigError, load_config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Echo: a self-hosted persona server with three circuits and a memory."""


@main.command("serve")
@click.option("--config", "-c", "config_file", envvar=CONFIG_ENV, help=f"YAML config (default: ${CONFIG_ENV} or configs/default.yaml).")
@click.option("--host", help="Address to listen on (default: the config's host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default: the config's port, 8000).")
@click.option("--address", envvar="RAY_ADDRESS", help="A running Ray cluster to join (default: start one here).")
def serve_command(config_file: str | None, host: str | None, port: int | None, address: str | None) -> None:
    """Start Echo and keep it running until Ctrl-C."""
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    config = config.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v is not None})

    import ray
    from ray import serve

    from serve_app import build_from_config, start_ray

    # Ctrl-C or `kill` at any moment, start-up included, ends in an orderly shutdown.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    start_ray(address, log_to_driver=False)
    try:
        try:
            app = build_from_config(config)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        serve.start(http_options={"host": config.host, "port": config.port})
        serve.run(app, name="echo", route_prefix="/")
        shown = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
        url = f"http://{shown}:{config.port}"
        click.echo(f"\nEcho is up at {url}/  (models load in the background: {url}/health)")
        click.echo(f"Try:  curl -s {url}/api/ask -H 'Content-Type: application/json' -d '{{\"prompt\": \"안녕, 오늘 어때?\"}}'")
        if origin_token() is None:
            click.echo(f"Privileged commands (making projects) are disabled: {ENABLE_HINT}.")
        click.echo("Stop with Ctrl-C.\n")
        _report_when_ready(f"{url}/health", stop)
        stop.wait()
        click.echo("Stopping Echo...")
        serve.delete("echo") if address else serve.shutdown()  # leave a shared cluster's other apps alone
    finally:
        ray.shutdown()


@main.command("restore")
@click.option("--config", "-c", "config_file", envvar=CONFIG_ENV, help=f"YAML config (default: ${CONFIG_ENV} or configs/default.yaml).")
def restore_command(config_file: str | None) -> None:
    """Rebuild memory/ from memory_backup/, never removing a line memory/ has."""
    from core.memory_store import restore

    try:
        config = load_config(config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not config.backup_dir.is_dir():
        raise click.ClickException(f"no backup at {config.backup_dir}: nothing to restore from (backup_dir in the config)")
    report = restore(config.memory_dir, config.backup_dir)
    for path in report.restored:
        click.echo(f"restored   {path}")
    for path in report.conflicts:
        click.echo(f"conflict   {path}: differs from its backup; left as it is (compare the two by hand)", err=True)
    click.echo(f"{len(report.restored)} restored, {len(report.unchanged)} already whole, {len(report.conflicts)} conflicts")
    if report.conflicts:
        sys.exit(1)


def _report_when_ready(health_url: str, stop: threading.Event, timeout_s: float = 600) -> None:
    """Print each circuit's state until all are ready, one failed, or Echo is stopping."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline and not stop.is_set():
        try:
            with urllib.request.urlopen(health_url, timeout=10) as response:
                health = json.load(response)
        except OSError:
            stop.wait(1)
            continue
        states = {name: c.get("state") for name, c in health["circuits"].items()}
        if states != last:
            click.echo("circuits: " + ", ".join(f"{n} {s}" for n, s in states.items()))
            last = states
        failed = {n: c.get("reason") for n, c in health["circuits"].items() if c.get("state") == "failed"}
        if failed:
            for name, reason in failed.items():
                click.echo(f"circuit {name} failed: {reason}", err=True)
            return
        if health["status"] == "ready":
            return
        stop.wait(1)


if __name__ == "__main__":
    sys.exit(main())
