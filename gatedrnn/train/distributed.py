"""Data parallelism over every device of every process with `jax.sharding`.

One mesh axis, "data": a batch is split along its first axis across devices and the train
state is replicated. With several processes (`jax.distributed`), every process builds the
same global batch from (seed, step) and hands each of its devices its own slice.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"


def initialize(coordinator_address: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Joins a multi-process run (no-op without a coordinator address).

    On CPU, cross-process collectives go through gloo.
    """
    if not coordinator_address:
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)


def make_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(AXIS))


def global_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Host arrays holding the whole global batch -> global arrays split along axis 0."""
    return {k: jax.make_array_from_callback(v.shape, sharding, lambda idx, v=v: v[idx]) for k, v in batch.items()}


def replicate(tree: Any, sharding: NamedSharding) -> Any:
    """Arrays equal on every process -> global arrays with a copy on every device."""

    def put(a):
        host = np.asarray(a)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(put, tree)


def to_host(tree: Any) -> Any:
    """Replicated global arrays -> NumPy (reads this process's copy; works with many processes)."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)
