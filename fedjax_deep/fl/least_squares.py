"""Heterogeneous least-squares clients: a small float64 testbed where every algorithm's fixed point
is known in closed form (objective inconsistency under unequal local work, control-variate weights).

Client ``i`` holds ``n_i`` rows ``A_i [n_i, d]`` and targets ``b_i [n_i]`` and has the mean loss
``L_i(w) = ||A_i w - b_i||^2 / (2 n_i)``. The federated objective that the example-weighted model
average targets is ``sum_i (n_i / n) L_i`` (:func:`minimizer` with ``'examples'``); the papers of
SCAFFOLD and FedDyn target ``sum_i L_i / P`` (``'uniform'``). :func:`make_round` trains any
:class:`~fedjax_deep.fl.algorithms.Algorithm` on them with full-batch gradient descent through the
library's own masked client scan (:func:`~fedjax_deep.fl.client.make_client_update`), each client
with its own step budget, so a test or a benchmark sees exactly what the round computes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_deep.fl import clients
from fedjax_deep.fl.algorithms import Algorithm
from fedjax_deep.fl.client import ClientState, make_client_update


class LinearModel:
    """``x [N, d] @ params['w'] [d]``: the least-squares model in the library's ``apply`` form."""

    @staticmethod
    def apply(params, model_state, x, train=True, mask=None):
        return x @ params["w"], model_state


def half_squared_error(outputs, batch):
    """A :data:`fedjax_deep.losses.Loss`: ``r^2 / 2`` per row, so the masked mean over a client's
    real rows is ``||r||^2 / (2 n)``."""
    return 0.5 * jnp.square(outputs - batch["y"]), {}


def make_clients(rng: np.random.Generator, sizes, dim: int, spread: float = 1.0) -> dict:
    """Clients of ``sizes`` rows each, padded to the largest: ``{'x': [C, N, d], 'y': [C, N],
    'mask': [C, N], 'num_examples': [C]}`` (float64 NumPy). Each client's targets come from its own
    weight vector (``spread`` apart), so the clients disagree on the minimizer."""
    num, width = len(sizes), max(sizes)
    x = np.zeros((num, width, dim))
    y = np.zeros((num, width))
    mask = np.zeros((num, width))
    for i, n in enumerate(sizes):
        w_i = rng.standard_normal(dim) * spread
        x[i, :n] = rng.standard_normal((n, dim))
        y[i, :n] = x[i, :n] @ w_i + 0.1 * rng.standard_normal(n)
        mask[i, :n] = 1.0
    return {"x": x, "y": y, "mask": mask, "num_examples": np.asarray(sizes, np.float64)}


def minimizer(data: dict, weighting: str = "examples") -> np.ndarray:
    """The minimizer of ``sum_i s_i L_i``: ``s_i = n_i / n`` (``'examples'``) or ``1 / P``
    (``'uniform'``): ``[d]``."""
    n = data["num_examples"]
    share = n / n.sum() if weighting == "examples" else np.full_like(n, 1.0 / len(n))
    x = data["x"] * data["mask"][..., None]
    h = np.einsum("c,cnd,cne->de", share / n, x, x)
    g = np.einsum("c,cnd,cn->d", share / n, x, data["y"])
    return np.linalg.solve(h, g)


def make_round(algorithm: Algorithm, learning_rate: float, num_steps: int):
    """``round_fn(params, rule_state, persistent, data, budgets) -> (params, rule_state,
    persistent, steps_taken)``: one round of ``algorithm`` on least-squares clients.

    Every client runs ``num_steps`` (static ``S``) masked steps of full-batch gradient descent at
    ``learning_rate`` from where the algorithm starts it, taking its first ``budgets[c]`` of them
    (``budgets [C]`` int32); the server weights clients by examples (``data['num_examples']``).
    ``params``: ``{'w': [d]}``; ``persistent``: the algorithm's per-client state ``[C, ...]``.
    """
    optimizer = optax.sgd(learning_rate)
    client_update = make_client_update(
        LinearModel(), optimizer, grad_hook=algorithm.grad_hook, loss_fn=half_squared_error
    )

    def round_fn(params, rule_state, persistent, data, budgets):
        width = data["x"].shape[1]
        idx = jnp.broadcast_to(jnp.arange(width), (num_steps, width))

        def one(own, x, y, mask, budget):
            start, ctx = algorithm.client_init(rule_state, own, params)
            begin = ClientState(start, {}, optimizer.init(start))
            steps = {"idx": idx, "mask": jnp.broadcast_to(mask > 0, (num_steps, width))}
            end, metrics = client_update(
                begin, steps, jax.random.key(0), {"x": x, "y": y}, ctx, budget
            )
            output, own = algorithm.client_final(
                rule_state, start, end.params, ctx, own, metrics["num_steps"]
            )
            return output, own, metrics["num_steps"]

        outputs, persistent, taken = jax.vmap(one)(
            persistent, data["x"], data["y"], data["mask"], budgets
        )
        weights = clients.normalized_weights(data["num_examples"], data["x"].dtype)
        params, rule_state = algorithm.server_apply(params, rule_state, outputs, weights)
        return params, rule_state, persistent, taken

    return round_fn


def run(algorithm: Algorithm, data: dict, budgets, learning_rate: float, num_rounds: int):
    """``num_rounds`` rounds from ``w = 0`` in one compiled program: the server model after each
    round ``[R, d]`` and each client's steps taken in the last ``[C]``. Call under
    ``jax.enable_x64(True)`` for float64."""
    data = jax.tree.map(jnp.asarray, data)
    budgets = jnp.asarray(budgets, jnp.int32)
    num_steps = int(np.max(np.asarray(budgets)))
    round_fn = make_round(algorithm, learning_rate, num_steps)
    params = {"w": jnp.zeros(data["x"].shape[-1], data["x"].dtype)}
    num = data["x"].shape[0]
    persistent = jax.tree.map(
        lambda a: jnp.broadcast_to(a, (num, *a.shape)), algorithm.persistent_init(params)
    )

    @jax.jit
    def rounds(params, rule_state, persistent):
        def body(carry, _):
            params, rule_state, persistent, _ = carry
            carry = round_fn(params, rule_state, persistent, data, budgets)
            return carry, carry[0]["w"]

        zero = jnp.zeros(num, jnp.int32)
        (_, _, _, taken), path = jax.lax.scan(
            body, (params, rule_state, persistent, zero), None, length=num_rounds
        )
        return path, taken

    return rounds(params, algorithm.server_init(params), persistent)
