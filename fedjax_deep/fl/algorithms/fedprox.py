"""FedProx (Li et al. 2020): each local step adds the proximal term's gradient
``mu * (params - server_params)``; ``mu = 0`` is FedAvg. The server side is FedAvg's.

``mu`` lives in the server state (``rule_state['mu']``), as ``optax.inject_hyperparams`` keeps an
optimizer's hyper-parameters in its state: a sweep stacks the states of its members, so each member
trains with its own ``mu`` in one compiled program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_deep.fl.algorithms.base import Algorithm
from fedjax_deep.fl.algorithms.fedavg import fedavg


def client_init(rule_state, persistent, start):
    return start, (start, rule_state["mu"])  # ctx: the point the proximal term pulls toward


def grad_hook(grads, params, ctx):
    anchor, mu = ctx
    return jax.tree.map(lambda g, p, a: g + mu.astype(g.dtype) * (p - a), grads, params, anchor)


def fedprox(mu: float, server_optimizer=None) -> Algorithm:
    base = fedavg(server_optimizer)

    def server_init(params):
        return {"opt": base.server_init(params), "mu": jnp.asarray(mu, jnp.float32)}

    def server_apply(params, rule_state, outputs, weights, axis_name=None):
        params, opt = base.server_apply(params, rule_state["opt"], outputs, weights, axis_name)
        return params, {**rule_state, "opt": opt}

    return base.replace(
        name="fedprox",
        server_init=server_init,
        server_apply=server_apply,
        client_init=client_init,
        grad_hook=grad_hook,
    )
