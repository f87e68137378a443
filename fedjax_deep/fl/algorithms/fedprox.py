"""FedProx (Li et al. 2020): each local step adds the proximal term's gradient
``mu * (params - server_params)``; ``mu = 0`` is FedAvg. The server side is FedAvg's."""

from __future__ import annotations

import jax

from fedjax_deep.fl.algorithms.fedavg import fedavg


def fedprox(mu: float, server_optimizer=None):
    base = fedavg(server_optimizer)

    def client_init(rule_state, persistent, start):
        return start, start  # ctx: the point the proximal term pulls toward

    def grad_hook(grads, params, anchor):
        return jax.tree.map(lambda g, p, a: g + mu * (p - a), grads, params, anchor)

    return base._replace(client_init=client_init, grad_hook=grad_hook, name="fedprox")
