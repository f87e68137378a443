"""FedNova (Wang et al. 2020): normalized averaging for clients that take different numbers of
local steps.

With client SGD momentum ``rho``, ``K_i`` local steps give client ``i`` the effective step count
``a_i = sum_{t=1..K_i} (1 - rho^t) / (1 - rho)`` (``K_i`` without momentum). Each client sends its
normalized update ``d_i = (x - y_i) / a_i``; the server uses the pseudo-gradient
``tau_eff * sum_i p_i d_i`` with ``tau_eff = sum_i p_i a_i``, through its optimizer. With equal step
counts this is FedAvg. Weight decay is treated as part of the gradient (not normalized apart).
``rho`` lives in the server state (``rule_state['momentum']``), so the members of a sweep each use
their own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from fedjax_deep.fl import clients
from fedjax_deep.fl.algorithms.base import Algorithm
from fedjax_deep.fl.algorithms.fedavg import fedavg


def effective_steps(num_steps, momentum: float):
    """``a_i`` for ``num_steps`` local SGD steps with momentum ``momentum``."""
    k = num_steps.astype(jnp.float32)
    if isinstance(momentum, int | float) and not momentum:
        return k
    rho = jnp.asarray(momentum, jnp.float32)  # may be traced: exactly k at rho = 0
    safe = jnp.where(rho > 0, rho, 0.5)
    return jnp.where(rho > 0, (k - safe * (1 - safe**k) / (1 - safe)) / (1 - safe), k)


def client_final(rule_state, start, end, ctx, persistent, num_steps):
    """Sends ``(d_i, a_i)``: the update normalized by the effective step count, and that count."""
    a = effective_steps(num_steps, rule_state["momentum"])
    inv = jnp.where(a > 0, 1.0 / jnp.maximum(a, 1e-12), 0.0)
    d = jax.tree.map(lambda x, y: (x - y) * inv.astype(x.dtype), start, end)
    return (d, a), persistent


def fednova(momentum: float, server_optimizer=None) -> Algorithm:
    server_optimizer = server_optimizer or optax.sgd(1.0)
    base = fedavg(server_optimizer)

    def server_init(params):
        return {"opt": base.server_init(params), "momentum": jnp.asarray(momentum, jnp.float32)}

    def server_apply(params, rule_state, outputs, weights, axis_name=None):
        d, a = outputs
        tau_eff = clients.weighted_mean(a, weights, axis_name)
        mean_d = clients.weighted_mean(d, weights, axis_name)
        pseudo_grad = jax.tree.map(lambda m: tau_eff.astype(m.dtype) * m, mean_d)
        updates, opt = server_optimizer.update(pseudo_grad, rule_state["opt"], params)
        return optax.apply_updates(params, updates), {**rule_state, "opt": opt}

    return base.replace(
        name="fednova",
        server_init=server_init,
        server_apply=server_apply,
        client_final=client_final,
    )
