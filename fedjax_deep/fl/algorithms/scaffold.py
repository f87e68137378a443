"""SCAFFOLD, option II (Karimireddy et al. 2020).

Each client ``i`` keeps a control variate ``c_i`` (zeros at first) across rounds, for the whole
population, untouched while it is not sampled. A local step corrects the gradient by ``c - c_i``.
After ``K_i`` local steps at learning rate ``lr``:
``c_i+ = c_i - c + (x - y_i) / (a_i * lr)``, where ``a_i`` is ``K_i`` for plain SGD and, with
client momentum ``rho``, the effective step count ``sum_{t=1..K_i} (1 - rho^t) / (1 - rho)`` (as in
FedNova): the displacement that ``K_i`` momentum steps make under a constant gradient. Dividing by
``K_i`` alone overstates the gradient up to ``1 / (1 - rho)`` times and made runs with momentum 0.9
diverge in our tests. The server moves ``x`` by the weighted mean update
(through its optimizer) and ``c += sum_{i in cohort} (c_i+ - c_i) / P`` (``P``: population size).
``lr`` and ``rho`` live in the server state (``rule_state['lr']``, ``['momentum']``), so the
members of a sweep each use their own.

With unequal clients the paper's ``1 / P`` weights make ``c`` the plain mean of the ``c_i`` and the
fixed point the minimizer of the plain mean of client losses, while the model is averaged with
example weights; ``variate_weights='examples'`` weights ``c``'s update by examples too
(:func:`~fedjax_deep.fl.algorithms.base.variate_mean`): the fixed point is then the
example-weighted minimizer that FedAvg, FedProx and FedNova reach.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_deep.fl.algorithms.base import (
    Algorithm,
    variate_mean,
    with_control_variate,
    zeros_like,
)
from fedjax_deep.fl.algorithms.fedavg import fedavg
from fedjax_deep.fl.algorithms.fednova import effective_steps


def client_init(rule_state, c_i, start):
    """Trains from the server model; the context is the correction ``c - c_i``."""
    return start, jax.tree.map(jnp.subtract, rule_state["c"], c_i)


def grad_hook(grads, params, correction):
    return jax.tree.map(jnp.add, grads, correction)


def client_final(rule_state, start, end, correction, c_i, num_steps):
    """Sends ``(y_i, c_i+ - c_i)`` and keeps ``c_i+`` (unchanged for a client that took no step)."""
    steps = jnp.maximum(effective_steps(num_steps, rule_state["momentum"]), 1e-12)
    scale = 1.0 / (steps * rule_state["lr"])
    new_c_i = jax.tree.map(
        lambda ci, c, x, y: jnp.where(num_steps > 0, ci - c + (x - y) * scale.astype(x.dtype), ci),
        c_i, rule_state["c"], start, end,
    )  # fmt: skip
    delta_c = jax.tree.map(jnp.subtract, new_c_i, c_i)
    return (end, delta_c), new_c_i


def scaffold(
    learning_rate: float,
    num_clients: int,
    server_optimizer=None,
    momentum: float = 0.0,
    variate_weights: str = "uniform",
) -> Algorithm:
    """``learning_rate`` and ``momentum``: the clients' (for option II's ``1 / (a lr)``);
    ``num_clients``: ``P``; ``variate_weights``: ``'uniform'`` (the paper's) or ``'examples'``."""
    base = fedavg(server_optimizer)

    def server_init(params):
        return {
            "opt": base.server_init(params),
            "c": zeros_like(params),
            "lr": jnp.asarray(learning_rate, jnp.float32),
            "momentum": jnp.asarray(momentum, jnp.float32),
        }

    def server_apply(params, rule_state, outputs, weights, axis_name=None):
        client_params, delta_c = outputs
        params, opt = base.server_apply(
            params, rule_state["opt"], client_params, weights, axis_name
        )
        mean_delta_c = variate_mean(delta_c, weights, num_clients, variate_weights, axis_name)
        c = jax.tree.map(jnp.add, rule_state["c"], mean_delta_c)
        return params, {**rule_state, "opt": opt, "c": c}

    return with_control_variate(
        "scaffold", server_init, server_apply, client_init, grad_hook, client_final
    )
