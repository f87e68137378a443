"""What a federated algorithm is (:class:`Algorithm`) and what it asks of an experiment
(:class:`AlgorithmSpec`, built from a :class:`Setting`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_deep.fl import clients
from fedjax_deep.types import ModelState, Params, PyTree


def no_client_state(params: Params) -> PyTree:
    """``persistent_init`` of an algorithm that keeps nothing per client."""
    return {}


def zeros_like(params: Params) -> PyTree:
    """``persistent_init`` of a per-client control variate: zeros shaped like the model."""
    return jax.tree.map(jnp.zeros_like, params)


def start_from_server(rule_state, persistent, start: Params):
    """``client_init`` that trains from the server model, with no context."""
    return start, None


def send_trained_params(rule_state, start, end, ctx, persistent, num_steps):
    """``client_final`` that sends the trained model and keeps its persistent state."""
    return end, persistent


@dataclasses.dataclass(frozen=True, kw_only=True)
class Algorithm:
    """A federated algorithm (see :mod:`fedjax_deep.fl.algorithms` for each function's contract).

    The client-side functions default to FedAvg's (train from the server model, send the trained
    model, keep nothing per client). ``local_model_state``: each client keeps its own BatchNorm
    statistics across rounds (FedBN), so the simulation state holds them for the population.
    ``server_key``: ``server_apply`` also takes ``key=`` (folded from the round's key) and returns
    ``(params, rule_state, metrics)``, scalars the round logs (DP-FedAvg's noise:
    :func:`fedjax_deep.fl.privacy.private`).
    """

    server_init: Callable[[Params], PyTree]
    server_apply: Callable[..., tuple[Params, PyTree]]
    persistent_init: Callable[[Params], PyTree] = no_client_state
    client_init: Callable[..., tuple[Params, Any]] = start_from_server
    grad_hook: Callable[..., PyTree] | None = None
    client_final: Callable[..., tuple[PyTree, PyTree]] = send_trained_params
    local_model_state: bool = False
    server_key: bool = False
    name: str = "fedavg"

    def replace(self, **changes) -> Algorithm:
        return dataclasses.replace(self, **changes)

    def persistent_bytes(self, params: Params) -> int:
        """Bytes of one client's persistent state, from shapes alone (``jax.eval_shape``;
        ``params`` may be ``jax.ShapeDtypeStruct``\\ s)."""
        shapes = jax.eval_shape(self.persistent_init, params)
        return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(shapes))


def with_control_variate(
    name: str, server_init, server_apply, client_init, grad_hook, client_final
) -> Algorithm:
    """An algorithm whose clients each keep a control variate shaped like the model, zeros at first
    and untouched while not sampled (SCAFFOLD's ``c_i``, FedDyn's ``h_i``)."""
    return Algorithm(
        name=name,
        server_init=server_init,
        server_apply=server_apply,
        persistent_init=zeros_like,
        client_init=client_init,
        grad_hook=grad_hook,
        client_final=client_final,
    )


@dataclasses.dataclass(frozen=True)
class Setting:
    """What an experiment knows, besides ``config.algorithm``, when it builds an algorithm.

    Attributes:
      server_optimizer: ``config.server_opt`` as an optax transformation.
      num_clients: the population size ``P``.
      client_learning_rate, client_momentum: the client optimizer's.
      model_state: the model's BatchNorm statistics (shapes suffice: they name the modules).
      variate_weights: SCAFFOLD's and FedDyn's control-variate weights (:func:`variate_mean`).
    """

    server_optimizer: optax.GradientTransformation
    num_clients: int
    client_learning_rate: float
    client_momentum: float
    model_state: ModelState
    variate_weights: str = "uniform"


@dataclasses.dataclass(frozen=True)
class AlgorithmSpec:
    """A registry entry: how to build an algorithm and what it asks of the config.

    Attributes:
      build: ``(config.algorithm, Setting) -> Algorithm``.
      hparams: the fields of ``config.algorithm`` it reads (the run records them).
      uses_server_optimizer: False when it makes its own server update (FedDyn): the config then
        asks for the default server optimizer.
      needs_batch_norm: it keeps BatchNorm layers local (FedBN): the config asks for
        ``model.norm='batch'``.
    """

    build: Callable[[Any, Setting], Algorithm]
    hparams: tuple[str, ...] = ()
    uses_server_optimizer: bool = True
    needs_batch_norm: bool = False
    sends_model: bool = False


VARIATE_WEIGHTS = ("uniform", "examples")


def population_mean(tree: PyTree, weights: jax.Array, num_clients: int, axis_name=None) -> PyTree:
    """``sum_{k in cohort} tree[k] / P``: the population's mean of a per-client quantity that is
    zero for the clients not sampled (a control variate's change): ``[C, ...]`` -> ``[...]``.
    ``weights`` only gives the shape and dtype of the ``1 / P`` weights."""
    share = jnp.full(weights.shape, 1.0 / num_clients, weights.dtype)
    return clients.weighted_mean(tree, share, axis_name)


def variate_mean(
    tree: PyTree, weights: jax.Array, num_clients: int, variate_weights: str, axis_name=None
) -> PyTree:
    """The population's average of a control variate's change (zero for the clients not sampled
    or that took no step): ``tree [C, ...]`` -> ``[...]``.

    ``'uniform'`` (SCAFFOLD's and FedDyn's papers): every client counts ``1 / P``
    (:func:`population_mean`), so the server's variate is the plain mean of the clients' and the
    fixed point minimizes the plain mean of client losses. ``'examples'``: client ``k`` counts
    ``weights[k] * C' / P``, its example weight in the cohort scaled by the cohort's share of the
    population (``C'``: clients with a positive weight), as the model is averaged: the fixed point
    is the example-weighted minimizer. With every client in the cohort this is exactly ``n_k / n``;
    with a sampled cohort, ``C' / P`` estimates the cohort's share of the examples.
    """
    if variate_weights == "uniform":
        return population_mean(tree, weights, num_clients, axis_name)
    if variate_weights != "examples":
        raise ValueError(f"variate_weights {variate_weights!r}: use one of {VARIATE_WEIGHTS}")
    reporting = clients.sum((weights > 0).astype(weights.dtype), axis_name)
    return clients.weighted_mean(tree, weights * (reporting / num_clients), axis_name)
