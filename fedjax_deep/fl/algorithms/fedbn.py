"""FedBN (Li et al. 2021): BatchNorm layers stay local.

Each client keeps its own BatchNorm scale and shift (here, the parameters of every module that
holds BatchNorm statistics) across rounds, starting each round from them instead of the server's;
its running statistics stay local too (the round's ``local_model_state``). The server averages every
parameter as FedAvg does, so the global model it evaluates carries the example-weighted mean of the
clients' BatchNorm parameters and statistics (FedBN itself evaluates each client's own model on its
own data; our test split is shared, so we report the averaged model).
"""

from __future__ import annotations

import jax

from fedjax_deep.fl.algorithms.base import Algorithm
from fedjax_deep.fl.algorithms.fedavg import fedavg


def _module(path) -> tuple:
    return tuple(str(getattr(k, "key", k)) for k in path[:-1])


def norm_mask(params, model_state):
    """A pytree of bools like ``params``: True for the parameters of BatchNorm modules."""
    norm_modules = {_module(p) for p, _ in jax.tree_util.tree_flatten_with_path(model_state)[0]}
    return jax.tree_util.tree_map_with_path(lambda p, _: _module(p) in norm_modules, params)


def _select(params: dict, mask: dict) -> dict:
    """The sub-dict of ``params`` whose ``mask`` leaves are True (empty groups dropped)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            sub = _select(v, mask[k])
            if sub:
                out[k] = sub
        elif mask[k]:
            out[k] = v
    return out


def _merge(params: dict, local: dict) -> dict:
    """``params`` with the leaves present in ``local`` replaced by ``local``'s."""
    return {
        k: (_merge(v, local[k]) if isinstance(v, dict) else local[k]) if k in local else v
        for k, v in params.items()
    }


def client_init(rule_state, local, start):
    """Trains from the server model with the client's own BatchNorm parameters."""
    return _merge(start, local), None


def fedbn(model_state, server_optimizer=None) -> Algorithm:
    """``model_state``: the model's BatchNorm statistics (names the BatchNorm modules; shapes
    suffice). The algorithm keeps them local too (``local_model_state``)."""

    def local_part(params):
        return _select(params, norm_mask(params, model_state))

    def client_final(rule_state, start, end, ctx, local, num_steps):
        return end, local_part(end)

    return fedavg(server_optimizer).replace(
        name="fedbn",
        persistent_init=local_part,
        client_init=client_init,
        client_final=client_final,
        local_model_state=True,
    )
