"""Client data on the device and the fixed-shape per-round batch layout ``[C, S, B]``.

Client data is padded to the largest client and copied to the device once (:func:`stack_clients`).
Each round, :func:`round_batch_indices` draws, on the device and inside the jitted round, every
client's shuffled example indices for all its local steps: ``idx [C, S, B]`` and ``mask [C, S, B]``
(False = padding). The client's local steps gather their batch from the device-resident data, so no
host-to-device copy happens per round or per step, and shapes never change between rounds.

Layout of one client's local steps: epochs of ``steps_per_epoch = ceil(N_max / B)`` steps; in each
epoch the client's ``n`` real examples come first in a fresh random order and the rest of the
epoch's ``steps_per_epoch * B`` slots are padding. A batch that is only padding is a no-op step.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class ClientData:
    """Stacked, padded client datasets, resident on the device.

    Attributes:
      x: ``[C, N, *input_shape]`` examples (rows past ``num_examples[c]`` are zero padding).
      y: ``[C, N, ...]`` labels (int32 class labels, or the targets' own dtype and shape).
      num_examples: ``[C]`` int32 real examples per client (its FedAvg weight).
      client_ids: ``[C]`` int32 global client index (PRNG streams are folded on it).
    """

    x: jax.Array
    y: jax.Array
    num_examples: jax.Array
    client_ids: jax.Array

    @property
    def num_clients(self) -> int:
        return self.num_examples.shape[0]

    @property
    def max_examples(self) -> int:
        return self.x.shape[1]


def stack_clients(
    x: np.ndarray, y: np.ndarray, partition: list[np.ndarray], *, on_device: bool = True
) -> ClientData:
    """Pads each client's examples to the largest client and stacks them on a leading C axis
    (device arrays, or NumPy arrays kept on the host with ``on_device=False``)."""
    max_n = max(len(p) for p in partition)
    num = len(partition)
    cx = np.zeros((num, max_n, *x.shape[1:]), x.dtype)
    y_dtype = np.int32 if np.issubdtype(y.dtype, np.integer) else y.dtype
    cy = np.zeros((num, max_n, *y.shape[1:]), y_dtype)
    for c, idx in enumerate(partition):
        cx[c, : len(idx)] = x[idx]
        cy[c, : len(idx)] = y[idx]
    xp = jnp if on_device else np
    return ClientData(
        x=xp.asarray(cx),
        y=xp.asarray(cy),
        num_examples=xp.asarray([len(p) for p in partition], np.int32),
        client_ids=xp.arange(num, dtype=np.int32),
    )


def steps_per_epoch(max_examples: int, batch_size: int) -> int:
    return math.ceil(max_examples / batch_size)


def num_local_steps(max_examples: int, batch_size: int, local_epochs: int, local_steps: int) -> int:
    """``local_steps`` if positive, else ``local_epochs`` full passes over the largest client."""
    if local_steps > 0:
        return local_steps
    return local_epochs * steps_per_epoch(max_examples, batch_size)


def client_batch_indices(
    key: jax.Array, num_examples: jax.Array, max_examples: int, batch_size: int, num_steps: int
) -> tuple[jax.Array, jax.Array]:
    """One client's shuffled batch indices for ``num_steps`` local steps.

    Args:
      key: this client's PRNG key for the round.
      num_examples: scalar, the client's real examples ``n <= max_examples``.
      max_examples, batch_size, num_steps: static ints.

    Returns:
      ``idx [S, B]`` int32 indices into the client's ``[N_max]`` rows and ``mask [S, B]`` bool.
    """
    spe = steps_per_epoch(max_examples, batch_size)
    slots = spe * batch_size
    num_epochs = math.ceil(num_steps / spe)
    position = jnp.arange(max_examples)

    def one_epoch(epoch_key):
        # Real examples get keys in [0, 1), padding 2: argsort puts the real ones first, shuffled.
        u = jax.random.uniform(epoch_key, (max_examples,))
        order = jnp.argsort(jnp.where(position < num_examples, u, 2.0)).astype(jnp.int32)
        order = jnp.pad(order, (0, slots - max_examples))
        return order, jnp.arange(slots) < num_examples

    idx, mask = jax.vmap(one_epoch)(jax.random.split(key, num_epochs))
    idx = idx.reshape(num_epochs * spe, batch_size)[:num_steps]
    mask = mask.reshape(num_epochs * spe, batch_size)[:num_steps]
    return idx, mask


def round_batch_indices(
    keys: jax.Array, num_examples: jax.Array, max_examples: int, batch_size: int, num_steps: int
) -> tuple[jax.Array, jax.Array]:
    """:func:`client_batch_indices` for every client: ``keys [C]``, ``num_examples [C]`` ->
    ``idx [C, S, B]``, ``mask [C, S, B]``."""
    return jax.vmap(client_batch_indices, in_axes=(0, 0, None, None, None))(
        keys, num_examples, max_examples, batch_size, num_steps
    )
