"""The client and server optimizers a config names (``config.client_opt``, ``config.server_opt``):
tables from a name to an optax transformation built from the group's fields.

Every optimizer's hyper-parameters are injected into its state (``optax.inject_hyperparams``): they
live there as arrays, so the members of a sweep, whose states are stacked, each train with their own
in one compiled program. The config validates ``client_opt.name`` and ``server_opt.name`` against
these tables' keys.
"""

from __future__ import annotations

from collections.abc import Callable

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

# On the pseudo-gradient: ``sgd`` (learning rate 1 and no momentum is plain FedAvg; momentum is
# FedAvgM), ``adam``, ``yogi``, ``adagrad`` (FedAdam, FedYogi, FedAdagrad of Reddi et al. 2021,
# ``eps`` their adaptivity ``tau``).
SERVER_OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": lambda c: inject(optax.sgd)(learning_rate=c.learning_rate, momentum=c.momentum or None),
    "adam": lambda c: inject(optax.adam)(
        learning_rate=c.learning_rate, b1=c.b1, b2=c.b2, eps=c.eps
    ),
    "yogi": lambda c: inject(optax.yogi)(
        learning_rate=c.learning_rate, b1=c.b1, b2=c.b2, eps=c.eps
    ),
    "adagrad": lambda c: inject(optax.adagrad)(
        learning_rate=c.learning_rate, initial_accumulator_value=0.0, eps=c.eps
    ),
}


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
