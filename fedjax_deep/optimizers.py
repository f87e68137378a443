"""The client and server optimizers a config names (``config.client_opt``, ``config.server_opt``):
tables from a name to an optax transformation built from the group's fields.

Every optimizer's hyper-parameters are injected into its state (``optax.inject_hyperparams``): they
live there as arrays, so the members of a sweep, whose states are stacked, each train with their own
in one compiled program. The config validates ``client_opt.name`` and ``server_opt.name`` against
these tables' keys.

FedAdam, FedYogi and FedAdagrad follow Reddi et al. 2021, Alg. 2 (:func:`fedopt`: no bias
correction, ``tau`` outside the square root, Adagrad's accumulator ``v + Delta^2`` with server
momentum) unless ``server_opt.variant='optax'`` asks for optax's bias-corrected optimizers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_deep.errors import FieldError

inject = optax.inject_hyperparams


def _sgd_with_decay(learning_rate, momentum, weight_decay) -> optax.GradientTransformation:
    return optax.chain(
        optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate, momentum=momentum)
    )


# SGD with momentum and (coupled, PyTorch-style) weight decay. Momentum 0 drops the momentum buffer
# (a different state structure: such points compile apart from points with momentum).
CLIENT_OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": lambda c: inject(_sgd_with_decay)(
        learning_rate=c.learning_rate, momentum=c.momentum or None, weight_decay=c.weight_decay
    ),
}


class FedOptState(NamedTuple):
    """State of :func:`scale_by_fedopt`: Reddi et al.'s ``m`` and ``v``, shaped like the params."""

    m: optax.Updates
    v: optax.Updates


FEDOPT_KINDS = ("adam", "yogi", "adagrad")


def scale_by_fedopt(kind: str, b1=0.9, b2=0.99, tau=1e-3) -> optax.GradientTransformation:
    """The server step of Reddi et al. 2021, Alg. 2, on the pseudo-gradient ``g = -Delta`` (the
    round's ``server_params - mean(client_params)``), before the learning rate:

    ``m = b1 m + (1 - b1) g``; ``v`` by ``kind``: ``adagrad`` ``v + g^2``, ``adam``
    ``b2 v + (1 - b2) g^2``, ``yogi`` ``v - (1 - b2) g^2 sign(v - g^2)``; the update is
    ``m / (sqrt(v) + tau)``: no bias correction, ``tau`` outside the square root. ``m`` starts at
    0 and ``v`` at ``tau^2`` (Alg. 2 asks for ``v_{-1} >= tau^2``; we take its smallest value).
    """
    if kind not in FEDOPT_KINDS:
        raise ValueError(f"kind {kind!r}: use one of {', '.join(FEDOPT_KINDS)}")

    def init_fn(params):
        return FedOptState(
            m=jax.tree.map(jnp.zeros_like, params),
            v=jax.tree.map(lambda p: jnp.full_like(p, jnp.square(tau)), params),
        )

    # Written as optax writes Adam and Yogi ((1 - b) g + b t, not b t + (1 - b) g), so that XLA
    # contracts multiply-adds alike in every program: a sweep's members then equal the same points
    # run alone bit for bit. Adagrad's g * g + v was fused into one FMA in some programs only; the
    # barrier keeps g^2 rounded on its own everywhere.
    def second_moment(v, g):
        g2 = jnp.square(g)
        if kind == "adagrad":
            return v + jax.lax.optimization_barrier(g2)
        if kind == "adam":
            return (1 - b2) * g2 + b2 * v
        return v - (1 - b2) * jnp.sign(v - g2) * g2

    def update_fn(updates, state, params=None):
        del params
        m = jax.tree.map(lambda g, m: (1 - b1) * g + b1 * m, updates, state.m)
        v = jax.tree.map(second_moment, state.v, updates)
        out = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + tau), m, v)
        return out, FedOptState(m, v)

    return optax.GradientTransformation(init_fn, update_fn)


def fedopt(kind: str, learning_rate, b1=0.9, b2=0.99, tau=1e-3) -> optax.GradientTransformation:
    """FedAdam, FedYogi or FedAdagrad (``kind``) as Reddi et al. 2021, Alg. 2, define them:
    ``x <- x + learning_rate * m / (sqrt(v) + tau)`` (:func:`scale_by_fedopt`)."""
    return optax.chain(
        scale_by_fedopt(kind, b1, b2, tau), optax.scale_by_learning_rate(learning_rate)
    )


def _adaptive(kind: str):
    """``config.server_opt`` -> FedAdam/FedYogi/FedAdagrad in its ``variant``: ``paper`` (Alg. 2 of
    Reddi et al.: :func:`fedopt`) or ``optax`` (optax's optimizer: bias-corrected Adam and Yogi,
    Yogi's accumulators starting at 1e-6, Adagrad without momentum and ``eps`` inside the root)."""

    def build(c) -> optax.GradientTransformation:
        if getattr(c, "variant", "paper") == "paper":
            return inject(functools.partial(fedopt, kind))(
                learning_rate=c.learning_rate, b1=c.b1, b2=c.b2, tau=c.eps
            )
        if kind == "adagrad":
            return inject(optax.adagrad)(
                learning_rate=c.learning_rate, initial_accumulator_value=0.0, eps=c.eps
            )
        return inject(getattr(optax, kind))(
            learning_rate=c.learning_rate, b1=c.b1, b2=c.b2, eps=c.eps
        )

    return build


# On the pseudo-gradient: ``sgd`` (learning rate 1 and no momentum is plain FedAvg; momentum is
# FedAvgM), ``adam``, ``yogi``, ``adagrad`` (FedAdam, FedYogi, FedAdagrad of Reddi et al. 2021,
# ``eps`` their adaptivity ``tau``; ``server_opt.variant`` picks Alg. 2 or optax's optimizers).
SERVER_OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": lambda c: inject(optax.sgd)(learning_rate=c.learning_rate, momentum=c.momentum or None),
    "adam": _adaptive("adam"),
    "yogi": _adaptive("yogi"),
    "adagrad": _adaptive("adagrad"),
}
SERVER_VARIANTS = ("paper", "optax")


def _lookup(table: dict, group: str, opt_config) -> optax.GradientTransformation:
    if opt_config.name not in table:
        raise FieldError(f"{group}.name", opt_config.name, f"use one of {', '.join(table)}")
    return table[opt_config.name](opt_config)


def make_client_optimizer(opt_config) -> optax.GradientTransformation:
    """``config.client_opt`` as an optax transformation (:data:`CLIENT_OPTIMIZERS`)."""
    return _lookup(CLIENT_OPTIMIZERS, "client_opt", opt_config)


def make_server_optimizer(opt_config) -> optax.GradientTransformation:
    """``config.server_opt`` as an optax transformation (:data:`SERVER_OPTIMIZERS`)."""
    return _lookup(SERVER_OPTIMIZERS, "server_opt", opt_config)
