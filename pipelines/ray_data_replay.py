"""The one-time replay of memory/ as a Ray Data pipeline.

list parts -> read whole files, parse, clean, tokenize (Ray Data tasks, spread over the
cluster) -> drop duplicates, the turns table, the lexical index, insight.json (echo.memory.replay,
in the caller). No model is called. A handful of changed parts is read in the caller:
starting a Ray Data job costs more than reading them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path

import pyarrow as pa

from echo.memory.parsing import DEFAULT_MARKERS
from echo.memory.replay import READ_SCHEMA, Replayer, read_parts
from echo.memory.store import PartFile

INLINE_PARTS = 8  # fewer changed parts than this are read without Ray Data
PARTS_PER_TASK = 16


def _read_batch(batch: pa.Table, memory_dir: str, markers: Mapping[str, str]) -> pa.Table:
    return read_parts(Path(memory_dir), [PartFile(**row) for row in batch.to_pylist()], markers)


def read_with_ray_data(
    memory_dir: Path, parts: Sequence[PartFile], markers: Mapping[str, str] = DEFAULT_MARKERS, resources: Mapping[str, float] | None = None
) -> pa.Table:
    """Read parts in Ray Data tasks (a progress bar shows while they run). With resources (the
    memory's home on a cluster), the tasks run only where they are offered: memory/ is there,
    and a task on another node would find no parts."""
    if len(parts) < INLINE_PARTS:
        return read_parts(memory_dir, parts, markers)
    import ray

    # A whole CPU per task where one is free; on a small machine whose circuits hold most
    # CPUs, what is left (tasks then take turns). Two blocks per slot even out part sizes.
    free = ray.available_resources().get("CPU", 0.0)
    home_cpus = None
    if resources:
        home_cpus = sum(n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["Alive"] and all(r in n["Resources"] for r in resources))
        free = min(free, home_cpus)
    task_cpus = 1.0 if free >= 1 else max(round(free, 2), 0.1)
    if home_cpus == 0:  # a home started with --num-cpus=0 still reads its own memory
        task_cpus = 0.0
    blocks = max(1, min(2 * max(1, int(free)), len(parts) // PARTS_PER_TASK, 64))
    dataset = ray.data.from_items([asdict(p) for p in parts], override_num_blocks=blocks).map_batches(
        _read_batch,
        fn_kwargs={"memory_dir": str(memory_dir), "markers": dict(markers)},
        batch_format="pyarrow",
        batch_size=None,  # one task per block of parts
        num_cpus=task_cpus,
        resources=dict(resources or {}),
    )
    tables = ray.get(dataset.to_arrow_refs())
    read = pa.concat_tables([t.cast(READ_SCHEMA) for t in tables]) if tables else READ_SCHEMA.empty_table()
    return read.replace_schema_metadata({"reader": "ray-data"})


def ray_data_replayer(index_dir: Path, markers: Mapping[str, str] = DEFAULT_MARKERS, resources: Mapping[str, float] | None = None) -> Replayer:
    """A Replayer of index_dir whose reads of many parts go through Ray Data (Ray must be
    initialized); resources: where the read tasks must run (read_with_ray_data)."""
    return Replayer(index_dir, reader=partial(read_with_ray_data, resources=resources), markers=markers)


def replay_with_ray_data(
    memory_dir: Path,
    index_dir: Path,
    *,
    force: bool = False,
    markers: Mapping[str, str] = DEFAULT_MARKERS,
    resources: Mapping[str, float] | None = None,
    **options,
) -> dict:
    """One replay of memory_dir into index_dir through Ray Data; the insight. options go to
    Replayer.update (settle_s, whole, on_read, facts)."""
    return ray_data_replayer(index_dir, markers, resources).update(memory_dir, force=force, **options)
