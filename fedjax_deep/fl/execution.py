"""How a round runs over the client axis: all clients under one vmap, chunks, or sharded over devices.

An :class:`Execution` has two independent knobs:

- ``chunk_size``: ``0`` vmaps every (device-local) client at once; ``k >= 1`` runs a ``lax.map`` over
  chunks of ``k`` vmapped clients (``1``: one client after another inside the compiled program):
  :func:`fedjax_deep.fl.clients.map`.
  Chunks bound memory (a cohort larger than memory runs in pieces) and, on CPU, run faster than one
  wide vmap (batched matrix products are slower than plain ones there; ``benchmarks/bench_clients.py``).
- ``mesh``: when set, the client axis is sharded over the mesh's ``'clients'`` axis with
  ``jax.shard_map``: each device trains its own clients with the chunk rule above, and FedAvg and the
  divergence reductions become ``psum``s across devices. With ``jax.distributed`` the mesh spans
  hosts and the same program runs on every process.

:func:`choose_execution` resolves the strategy names of ``config.fl.execution`` (``vmap``,
``chunked``, ``sharded``, ``auto``) into an :class:`Execution`, and says why in one line.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fedjax_deep.data.batching import ClientData

CLIENT_AXIS = "clients"
STRATEGIES = ("auto", "vmap", "chunked", "sharded")


@dataclasses.dataclass(frozen=True)
class Execution:
    """The client-axis execution of a round (see the module docstring)."""

    chunk_size: int = 0
    mesh: Mesh | None = None

    @property
    def axis_name(self) -> str | None:
        return CLIENT_AXIS if self.mesh is not None else None

    @property
    def num_shards(self) -> int:
        return 1 if self.mesh is None else self.mesh.devices.size

    def describe(self) -> str:
        local = "vmap" if self.chunk_size == 0 else f"lax.map over chunks of {self.chunk_size}"
        if self.mesh is None:
            return local
        return f"sharded over {self.num_shards} devices, {local} on each"


def client_mesh(devices=None) -> Mesh:
    """A 1-d mesh named ``'clients'`` over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (CLIENT_AXIS,))


def pad_clients(client_data: ClientData, multiple: int, *, on_device: bool = True) -> ClientData:
    """Appends empty clients (no examples, FedAvg weight 0, every step a no-op) so that the number
    of clients is a multiple of ``multiple`` (the device count when sharding). ``on_device=False``
    keeps NumPy (host) arrays on the host."""
    num = client_data.num_clients
    extra = -num % multiple
    if extra == 0:
        return client_data
    xp = jnp if on_device else np

    def pad(x):
        return xp.concatenate([x, xp.zeros((extra, *x.shape[1:]), x.dtype)])

    return ClientData(
        x=pad(client_data.x),
        y=pad(client_data.y),
        num_examples=pad(client_data.num_examples),
        client_ids=xp.concatenate(
            [client_data.client_ids, xp.max(client_data.client_ids) + 1 + xp.arange(extra)]
        ).astype(client_data.client_ids.dtype),
    )


def _global_array(x, sharding: NamedSharding) -> jax.Array:
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _global_array(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def shard_clients(tree, mesh: Mesh):
    """Puts a host/device tree with a leading client axis onto ``mesh``, split along ``'clients'``.
    Works across processes: every process passes the same full values."""
    sharding = NamedSharding(mesh, P(CLIENT_AXIS))
    return jax.tree.map(lambda x: _global_array(x, sharding), tree)


def replicate(tree, mesh: Mesh):
    """Puts a tree onto every device of ``mesh`` (every process passes the same values)."""
    sharding = NamedSharding(mesh, P())
    return jax.tree.map(lambda x: _global_array(x, sharding), tree)


def fetch(tree):
    """Host copies of a (replicated) result, also when it spans processes."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(x)

    return jax.tree.map(one, tree)


def available_memory_bytes(device=None) -> int | None:
    """Free memory of ``device``: the accelerator's allocator limit minus use, or, on CPU, the
    host's MemAvailable. None when unknown."""
    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # some backends do not implement memory_stats
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):
        return None


def estimate_bytes_per_client(fn, *args) -> int | None:
    """Memory one client needs: XLA's memory analysis of ``jit(fn)`` on one client's ``args``
    (arguments + outputs + temporaries). None when the backend does not report it."""
    try:
        analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    except Exception:  # memory_analysis is optional per backend
        return None
    if analysis is None:
        return None
    return int(
        analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
        + analysis.temp_size_in_bytes
    )


def place_round_inputs(execution: Execution, sim_state, client_data: ClientData):
    """Puts a round's inputs where ``execution`` wants them: unchanged without a mesh; with one,
    ``client_data`` padded and sharded over the clients axis, the per-client state
    (``sim_state.clients``) sharded, and the rest of the state replicated. Per-client state must
    already have the padded client count (build the state after :func:`pad_clients`)."""
    if execution.mesh is None:
        return sim_state, client_data
    mesh = execution.mesh
    if client_data is not None:
        client_data = shard_clients(pad_clients(client_data, execution.num_shards), mesh)
    clients = sim_state.clients
    sim_state = replicate(sim_state.replace(clients={}), mesh)
    return sim_state.replace(clients=shard_clients(clients, mesh)), client_data


def choose_execution(
    strategy: str,
    num_clients: int,
    *,
    chunk_size: int = 0,
    bytes_per_client: int | None = None,
    memory_fraction: float = 0.5,
    backend: str | None = None,
    devices=None,
) -> tuple[Execution, str]:
    """Resolves a strategy name into an :class:`Execution` and a one-line reason.

    Args:
      strategy: ``'vmap'``, ``'chunked'`` (``chunk_size`` clients at a time, default 1),
        ``'sharded'`` (over every device; ``chunk_size`` applies per device) or ``'auto'``.
      num_clients: the cohort size ``C``.
      bytes_per_client: the memory one client's local training needs (params, optimizer state,
        activations: see ``estimate_bytes_per_client``); ``auto`` uses it against free memory.
      memory_fraction: share of free device memory ``auto`` lets one chunk use.

    ``auto``: shard when there is more than one device; on CPU run one client after another
    (``lax.map``, the fastest there by ``benchmarks/bench_clients.py``); on GPU/TPU vmap as many clients
    as fit in ``memory_fraction`` of free memory, in chunks when they do not all fit.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}: use one of {STRATEGIES}")
    devices = jax.devices() if devices is None else devices
    backend = backend or jax.default_backend()
    if strategy == "vmap":
        return Execution(0), "vmap: every client at once, as configured"
    if strategy == "chunked":
        k = chunk_size or 1
        return Execution(k), f"chunked: {k} client(s) at a time, as configured"
    mesh = client_mesh(devices) if len(devices) > 1 or strategy == "sharded" else None
    if strategy == "sharded":
        ex = Execution(chunk_size, mesh)
        return ex, f"sharded as configured: {ex.describe()}"
    # auto
    local_clients = -(-num_clients // len(devices))
    if backend == "cpu":
        k = 1
        why = "CPU: one client at a time (lax.map) is fastest there"
    else:
        free = available_memory_bytes()
        if bytes_per_client and free:
            fit = max(int(memory_fraction * free // bytes_per_client), 1)
            k = 0 if fit >= local_clients else fit
            why = (
                f"{backend}: {fit} clients of {bytes_per_client / 2**20:.1f} MiB fit in "
                f"{memory_fraction:.0%} of {free / 2**30:.1f} GiB free"
            )
        else:
            k = 0
            why = f"{backend}: vmap every client (free memory unknown)"
    ex = Execution(k, mesh)
    return ex, f"auto: {ex.describe()} ({why}; {len(devices)} device(s), {num_clients} clients)"
