"""Federated algorithms as one interface of pure functions, vmapped by the round over clients.

An :class:`Algorithm` is six pure functions (FedJAX's ``client_init / client_step / client_final``
split with the server side as an optax-style pair; no Python loop over clients) and what it keeps
per client:

| function | signature | called |
|---|---|---|
| ``server_init`` | ``params -> rule_state`` | once |
| ``persistent_init`` | ``params -> one client's persistent state`` (``{}``: none) | once, for the population ``[P, ...]`` |
| ``client_init`` | ``(rule_state, persistent, start_params) -> (start_params, ctx)`` | per client (vmapped) |
| ``grad_hook`` | ``(grads, params, ctx) -> grads``, or None | every local step |
| ``client_final`` | ``(rule_state, start_params, end_params, ctx, persistent, num_steps) -> (output, persistent)`` | per client (vmapped) |
| ``server_apply`` | ``(params, rule_state, outputs [C, ...], weights [C], axis_name) -> (params, rule_state)`` | once per round |

``num_steps`` is the client's real local steps this round, the ones it actually took under its step
budget (:mod:`fedjax_deep.fl.heterogeneity`); 0 for a padding client, one that dropped out, or one
whose update was skipped as non-finite: algorithms then leave its persistent state unchanged.
``axis_name`` names the client axis when it is sharded (reduce with :mod:`fedjax_deep.fl.clients`).
Per-client persistent state lives in the population container (``SimState.clients['algorithm']``),
gathered for the cohort and scattered back by the round; ``local_model_state`` asks for each
client's BatchNorm statistics to be kept there too.

Algorithms: :func:`fedavg` (with any server optax optimizer: FedAvgM, FedAdam, FedYogi,
FedAdagrad), :func:`fedprox`, :func:`scaffold`, :func:`fednova`, :func:`feddyn`, :func:`fedbn`.

:data:`REGISTRY` maps ``config.algorithm.name`` to an :class:`AlgorithmSpec`: how to build the
algorithm from ``config.algorithm`` and a :class:`Setting`, and what it asks of the config (the
config validates against it; add an entry to register an algorithm of your own).
"""

from __future__ import annotations

import optax

from fedjax_deep.fl.algorithms.base import Algorithm, AlgorithmSpec, Setting
from fedjax_deep.fl.algorithms.fedavg import fedavg
from fedjax_deep.fl.algorithms.fedbn import fedbn
from fedjax_deep.fl.algorithms.feddyn import feddyn
from fedjax_deep.fl.algorithms.fednova import fednova
from fedjax_deep.fl.algorithms.fedprox import fedprox
from fedjax_deep.fl.algorithms.scaffold import scaffold

REGISTRY: dict[str, AlgorithmSpec] = {
    "fedavg": AlgorithmSpec(lambda a, s: fedavg(s.server_optimizer), sends_model=True),
    "fedprox": AlgorithmSpec(
        lambda a, s: fedprox(a.mu, s.server_optimizer), hparams=("mu",), sends_model=True
    ),
    "scaffold": AlgorithmSpec(
        lambda a, s: scaffold(
            s.client_learning_rate,
            s.num_clients,
            s.server_optimizer,
            s.client_momentum,
            s.variate_weights,
        ),
        hparams=("variate_weights",),
    ),  # fmt: skip
    "fednova": AlgorithmSpec(lambda a, s: fednova(s.client_momentum, s.server_optimizer)),
    "feddyn": AlgorithmSpec(
        lambda a, s: feddyn(a.alpha, s.num_clients, s.variate_weights),
        hparams=("alpha", "variate_weights"),
        uses_server_optimizer=False,
    ),  # fmt: skip
    "fedbn": AlgorithmSpec(
        lambda a, s: fedbn(s.model_state, s.server_optimizer), needs_batch_norm=True
    ),
}


def as_algorithm(algorithm: Algorithm | optax.GradientTransformation) -> Algorithm:
    """An :class:`Algorithm` as it is; an optax transformation as FedAvg's server optimizer."""
    return algorithm if isinstance(algorithm, Algorithm) else fedavg(algorithm)


__all__ = [
    "REGISTRY",
    "Algorithm",
    "AlgorithmSpec",
    "Setting",
    "as_algorithm",
    "fedavg",
    "fedbn",
    "feddyn",
    "fednova",
    "fedprox",
    "scaffold",
]
