"""Your own algorithm against the ``Algorithm`` interface, run through the command line by name:
FedAvg whose server step is clipped to a global norm (the mean client update, scaled down when
its norm exceeds ``MAX_NORM``, then the server optimizer).

This file is both the algorithm's module and a config file: loading it (``--config`` below)
registers ``fedavg_clip`` in the algorithm table, then ``get_config()`` names it. Run it with the
CLI directly:

    fedjax-deep train --config examples/own_algorithm.py --workdir runs/clip

or as a script (``--tiny``: the test suite's size), which calls the same CLI:

    python examples/own_algorithm.py WORKDIR [--tiny]
"""

import sys

import jax
import jax.numpy as jnp
import optax

from fedjax_deep import clients
from fedjax_deep.config import default_config
from fedjax_deep.fl.algorithms import REGISTRY, Algorithm, AlgorithmSpec

MAX_NORM = 0.05  # the server step's largest global norm


def fedavg_clip(max_norm: float, server_optimizer: optax.GradientTransformation) -> Algorithm:
    """Clients train from the server model (the defaults); the server clips the mean update."""

    def server_apply(server_params, rule_state, client_params, weights, axis_name=None):
        mean = clients.weighted_mean(client_params, weights, axis_name)  # over the client axis
        delta = jax.tree.map(jnp.subtract, server_params, mean)  # the pseudo-gradient
        norm = optax.global_norm(delta)
        delta = jax.tree.map(lambda d: d * jnp.minimum(1.0, max_norm / (norm + 1e-12)), delta)
        updates, rule_state = server_optimizer.update(delta, rule_state, server_params)
        return optax.apply_updates(server_params, updates), rule_state

    return Algorithm(name="fedavg_clip", server_init=server_optimizer.init,
                     server_apply=server_apply)  # fmt: skip


REGISTRY["fedavg_clip"] = AlgorithmSpec(lambda a, s: fedavg_clip(MAX_NORM, s.server_optimizer))


def get_config():
    config = default_config()
    config.algorithm.name = "fedavg_clip"
    config.num_rounds, config.model.depth, config.model.width = 3, 2, 8
    config.fl.num_clients, config.fl.local_epochs = 4, 1
    return config


if __name__ == "__main__":
    from fedjax_deep.cli import main

    workdir = next(a for a in sys.argv[1:] if a != "--tiny")
    tiny = [
        "--config.num_rounds=1",
        "--config.model.name=plain_mlp",
        "--config.model.depth=1",
        "--config.model.norm=none",
        "--config.fl.local_steps=1",
        "--config.fl.divergence=false",
    ]
    sys.exit(main(["train", "--config", __file__, "--workdir", workdir,
                   *(tiny if "--tiny" in sys.argv else [])]))  # fmt: skip
