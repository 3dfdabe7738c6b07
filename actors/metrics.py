"""Echo's metrics, through ray.util.metrics: Ray exports them with its own on every node's
Prometheus endpoint (`ray start --metrics-export-port`, or the dashboard's Metrics tab).

Each is made on first use in the process that records it (a replica or an actor).
"""

from __future__ import annotations

import functools

from ray.util import metrics

LAG_BUCKETS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 120]
SECONDS_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120]


@functools.cache
def lines_ingested() -> metrics.Counter:
    return metrics.Counter("echo_memory_lines_ingested", "Lines of memory/ read into the index (replay and ingestion).")


@functools.cache
def ingestion_lag() -> metrics.Histogram:
    return metrics.Histogram("echo_memory_ingestion_lag_seconds", "From a part's last write to its turns being searchable.", boundaries=LAG_BUCKETS)


@functools.cache
def replay_duration() -> metrics.Histogram:
    return metrics.Histogram("echo_memory_replay_seconds", "Duration of one replay of memory/.", boundaries=SECONDS_BUCKETS, tag_keys=("kind",))


@functools.cache
def parts_skipped() -> metrics.Gauge:
    return metrics.Gauge("echo_memory_parts_skipped", "Parts that could not be read (see insight.json).")


@functools.cache
def memory_turns() -> metrics.Gauge:
    return metrics.Gauge("echo_memory_turns", "Turns in the memory index, and how many have a vector.", tag_keys=("kind",))


@functools.cache
def circuit_latency() -> metrics.Histogram:
    return metrics.Histogram("echo_circuit_latency_seconds", "One circuit answer.", boundaries=SECONDS_BUCKETS, tag_keys=("circuit",))


@functools.cache
def circuit_tokens_per_second() -> metrics.Gauge:
    return metrics.Gauge(
        "echo_circuit_tokens_per_second", "Tokens per second of all of a circuit replica's slots together, over the last 5 s.", tag_keys=("circuit", "replica")
    )


@functools.cache
def circuit_slots_busy() -> metrics.Gauge:
    return metrics.Gauge("echo_circuit_slots_busy", "A circuit replica's slots (n_parallel) generating now.", tag_keys=("circuit", "replica"))


@functools.cache
def circuit_queued() -> metrics.Gauge:
    return metrics.Gauge("echo_circuit_queued", "Requests inside a circuit replica waiting for a free slot.", tag_keys=("circuit", "replica"))


@functools.cache
def requests() -> metrics.Counter:
    return metrics.Counter("echo_requests", "Answered /api/ask requests.", tag_keys=("route",))


@functools.cache
def requests_degraded() -> metrics.Counter:
    return metrics.Counter("echo_requests_degraded", "Answers given with a circuit (or the synthesis) failed.")


@functools.cache
def watch_events() -> metrics.Counter:
    return metrics.Counter("echo_watchdog_events", "File changes the watchdog saw.", tag_keys=("folder",))


@functools.cache
def manifest_reloads() -> metrics.Counter:
    return metrics.Counter("echo_manifest_reloads", "Manifest changes seen by the watchdog, by outcome.", tag_keys=("outcome",))


@functools.cache
def facts() -> metrics.Gauge:
    return metrics.Gauge("echo_facts", "Facts: stored (live), stale (their lines changed), deleted (forgotten, kept for undo).", tag_keys=("kind",))


@functools.cache
def facts_imported() -> metrics.Counter:
    return metrics.Counter("echo_facts_imported", "Facts added by `facts import` (the CLI or the owner over HTTP).")


@functools.cache
def distill_windows() -> metrics.Gauge:
    return metrics.Gauge(
        "echo_distill_windows", "Windows of the memory for the distiller: done, left (to distill), open (their conversation still going).", tag_keys=("kind",)
    )


@functools.cache
def distill_facts() -> metrics.Counter:
    return metrics.Counter("echo_distill_facts", "Facts the distiller added to the store.")


@functools.cache
def distill_tokens_per_second() -> metrics.Gauge:
    return metrics.Gauge("echo_distill_tokens_per_second", "Prompt and generated tokens per second of the distillation running now (0 when none runs).")
