"""FedAvg: clients train from the server model; the server applies the example-weighted mean
update through a server optax optimizer (``sgd(1.0)``: FedAvg; momentum: FedAvgM; ``adam``,
``yogi``, ``adagrad``: FedAdam, FedYogi, FedAdagrad, Reddi et al. 2021)."""

from __future__ import annotations

import optax

from fedjax_deep import aggregation


def fedavg(server_optimizer: optax.GradientTransformation | None = None, *, name: str = "fedavg"):
    """FedAvg through ``server_optimizer`` (default ``optax.sgd(1.0)``): the pseudo-gradient is
    ``server_params - weighted_mean(client_params)``."""
    from fedjax_deep.fl.algorithms import Algorithm

    rule = aggregation.fedavg(server_optimizer or optax.sgd(1.0))
    return Algorithm(
        server_init=rule.init,
        persistent_init=lambda params: {},
        client_init=lambda rule_state, persistent, start: (start, None),
        grad_hook=None,
        client_final=lambda rule_state, start, end, ctx, persistent, num_steps: (end, persistent),
        server_apply=rule.apply,
        name=name,
    )
