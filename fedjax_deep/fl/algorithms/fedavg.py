"""FedAvg: clients train from the server model; the server applies the example-weighted mean
update through a server optax optimizer (``sgd(1.0)``: FedAvg; momentum: FedAvgM; ``adam``,
``yogi``, ``adagrad``: FedAdam, FedYogi, FedAdagrad, Reddi et al. 2021)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from fedjax_deep.fl import clients
from fedjax_deep.fl.algorithms.base import Algorithm


def fedavg(server_optimizer: optax.GradientTransformation | None = None) -> Algorithm:
    """FedAvg through ``server_optimizer`` (default ``optax.sgd(1.0)``): the pseudo-gradient is
    ``server_params - weighted_mean(client_params)`` (minus the mean client update), so
    ``optax.sgd(1.0)`` sets the server model to the weighted average of the clients."""
    server_optimizer = server_optimizer or optax.sgd(1.0)

    def server_apply(server_params, rule_state, client_params, weights, axis_name=None):
        mean_params = clients.weighted_mean(client_params, weights, axis_name)
        pseudo_grad = jax.tree.map(jnp.subtract, server_params, mean_params)
        updates, rule_state = server_optimizer.update(pseudo_grad, rule_state, server_params)
        return optax.apply_updates(server_params, updates), rule_state

    return Algorithm(name="fedavg", server_init=server_optimizer.init, server_apply=server_apply)
