"""FedDyn (Acar et al. 2021): a dynamic regularizer that makes the clients' stationary points
agree with the global one.

Client ``i`` keeps ``h_i`` (zeros at first; the gradient of its past linear term) and minimizes
``L_i(w) - <h_i, w> + alpha/2 ||w - x||^2``: each local step's gradient becomes
``g - h_i + alpha (w - x)``; after training, ``h_i <- h_i - alpha (y_i - x)``. The server keeps
``h <- h - alpha / P * sum_{i in cohort} (y_i - x)`` and sets ``x <- weighted_mean(y) - h / alpha``
(its own update: the server optimizer is not used). ``alpha`` lives in the server state
(``rule_state['alpha']``), so the members of a sweep each train with their own.

With unequal clients the paper's ``1 / P`` in ``h``'s update makes the fixed point the minimizer of
the plain mean of client losses, while ``x`` averages the ``y_i`` by examples;
``variate_weights='examples'`` weights ``h``'s update by examples too
(:func:`~fedjax_deep.fl.algorithms.base.variate_mean`): the example-weighted minimizer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_deep.fl import clients
from fedjax_deep.fl.algorithms.base import (
    Algorithm,
    variate_mean,
    with_control_variate,
    zeros_like,
)


def client_init(rule_state, h_i, start):
    """Trains from the server model ``x``; the context is ``(x, h_i, alpha)``."""
    return start, (start, h_i, rule_state["alpha"])


def grad_hook(grads, params, ctx):
    x, h_i, a = ctx
    return jax.tree.map(lambda g, w, x0, h: g - h + a.astype(g.dtype) * (w - x0),
                        grads, params, x, h_i)  # fmt: skip


def client_final(rule_state, start, end, ctx, h_i, num_steps):
    """Sends ``y_i`` and keeps ``h_i - alpha (y_i - x)`` (unchanged for a client that took no step)."""
    a = rule_state["alpha"]
    new_h = jax.tree.map(
        lambda h, y, x: jnp.where(num_steps > 0, h - a.astype(h.dtype) * (y - x), h),
        h_i, end, start,
    )  # fmt: skip
    return end, new_h


def feddyn(alpha: float, num_clients: int, variate_weights: str = "uniform") -> Algorithm:
    """``alpha``: the regularizer's weight; ``num_clients``: ``P``; ``variate_weights``:
    ``'uniform'`` (the paper's) or ``'examples'``."""

    def server_init(params):
        return {"h": zeros_like(params), "alpha": jnp.asarray(alpha, jnp.float32)}

    def server_apply(params, rule_state, client_params, weights, axis_name=None):
        a = rule_state["alpha"]
        moved = jax.tree.map(lambda y, x: y - x[None], client_params, params)
        mean_moved = variate_mean(moved, weights, num_clients, variate_weights, axis_name)
        h = jax.tree.map(lambda h, m: h - a.astype(h.dtype) * m, rule_state["h"], mean_moved)
        mean = clients.weighted_mean(client_params, weights, axis_name)
        new = jax.tree.map(lambda m, hh: m - hh / a.astype(hh.dtype), mean, h)
        return new, {"h": h, "alpha": a}

    return with_control_variate(
        "feddyn", server_init, server_apply, client_init, grad_hook, client_final
    )
