"""Server rules: how the server turns client models into the next global model.

A rule is an optax-style pair of pure functions (:class:`ServerRule`):
``init(server_params) -> rule_state`` and
``apply(server_params, rule_state, client_params [C, ...], weights [C], axis_name=None)
-> (server_params, rule_state)``; ``axis_name`` names the client axis when it is sharded.
FedAvg here applies the example-weighted mean client update through a server optax optimizer:
``optax.sgd(1.0)`` is plain FedAvg; momentum gives FedAvgM, ``optax.adam`` FedAdam, and so on.
Whole algorithms (FedProx, SCAFFOLD, FedNova, FedDyn, FedBN) are in :mod:`fedjax_deep.fl.algorithms`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_deep.types import Params, PyTree


class ServerRule(NamedTuple):
    init: Callable[[Params], PyTree]
    apply: Callable[..., tuple[Params, PyTree]]


def _psum(x, axis_name):
    return jax.lax.psum(x, axis_name) if axis_name else x


def weighted_mean(client_tree: PyTree, weights: jax.Array, axis_name: str | None = None) -> PyTree:
    """``sum_k weights[k] * client_tree[k]`` leaf by leaf: ``[C, ...]`` and ``[C]`` -> ``[...]``.

    ``weights`` must already sum to one (over all shards); they are cast to each leaf's dtype.
    ``axis_name``: the client axis's name when it is sharded (inside ``shard_map``).
    """
    return jax.tree.map(
        lambda x: _psum(jnp.tensordot(weights.astype(x.dtype), x, axes=(0, 0)), axis_name),
        client_tree,
    )


def normalized_weights(
    num_examples: jax.Array, dtype=jnp.float32, axis_name: str | None = None
) -> jax.Array:
    """Client weights ``p_k = n_k / sum_j n_j``: ``[C]`` -> ``[C]`` (sum over shards too)."""
    n = num_examples.astype(dtype)
    return n / _psum(jnp.sum(n), axis_name)


def fedavg(server_optimizer: optax.GradientTransformation) -> ServerRule:
    """FedAvg through a server optimizer.

    The pseudo-gradient is ``server_params - weighted_mean(client_params)`` (minus the mean client
    update), so ``optax.sgd(1.0)`` sets the server model to the weighted average of the clients.
    """

    def init(server_params: Params) -> PyTree:
        return server_optimizer.init(server_params)

    def apply(server_params, rule_state, client_params, weights, axis_name=None):
        mean_params = weighted_mean(client_params, weights, axis_name)
        pseudo_grad = jax.tree.map(jnp.subtract, server_params, mean_params)
        updates, rule_state = server_optimizer.update(pseudo_grad, rule_state, server_params)
        return optax.apply_updates(server_params, updates), rule_state

    return ServerRule(init, apply)


__all__ = ["ServerRule", "fedavg", "normalized_weights", "weighted_mean"]
