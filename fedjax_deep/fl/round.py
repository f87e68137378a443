"""The federated round: one pure function that advances every client and the server.

``round_fn(server_state, client_data, key) -> (server_state, metrics)``, built by :func:`make_round`
and meant to be jitted once per experiment (shapes never change between rounds):

1. every client's shuffled batch indices for its ``S`` local steps, drawn on the device with the key
   ``fold_in(key, client_id)``;
2. the server model broadcast to ``C`` clients;
3. each client's gradient at the shared global model on its first batch (gradient divergence);
4. local training of all clients at once (``vmap`` of :func:`make_client_update`'s function);
5. the divergence metrics of every layer (reductions over the client axis);
6. the example-weighted FedAvg of the client updates through the server rule, and the weighted mean
   of BatchNorm statistics.

Centralized training is the same round with one client holding the union of the data and a client
optimizer state that persists across rounds (``persist_client_opt_state=True``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from fedjax_deep.aggregation import ServerRule, fedavg, normalized_weights, weighted_mean
from fedjax_deep.data.batching import ClientData, round_batch_indices
from fedjax_deep.fl.client import ClientState, make_client_grad, make_client_update
from fedjax_deep.metrics.divergence import divergence_metrics
from fedjax_deep.types import Metrics, ModelState, Params, PyTree


@struct.dataclass
class ServerState:
    """Everything the round carries from one round to the next.

    Attributes:
      params: the global model.
      model_state: the global model's BatchNorm statistics (``{}`` without BatchNorm).
      rule_state: the server rule's state (the server optimizer's optax state for FedAvg).
      round: int32 scalar, rounds completed.
      client_opt_state: ``[C, ...]`` client optimizer states when they persist across rounds
        (centralized mode, stateful clients), else ``None``: clients start each round afresh.
    """

    params: Params
    model_state: ModelState
    rule_state: PyTree
    round: jax.Array
    client_opt_state: PyTree | None = None


def broadcast_clients(tree: PyTree, num_clients: int) -> PyTree:
    """One model -> ``[C, ...]`` copies."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_clients, *x.shape)), tree)


def round_client_keys(key: jax.Array, client_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each client's keys for a round: ``(batch_keys [C], train_keys [C])``.

    Derived as ``fold_in(fold_in(key, client_id), 0 or 1)``: a client's draws depend only on the round
    key and its global id, never on the cohort's order or size, so a resumed run draws the same.
    """
    client_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, client_ids)
    batch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(client_keys, 0)
    train_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(client_keys, 1)
    return batch_keys, train_keys


def init_server_state(
    params: Params,
    model_state: ModelState,
    server_rule: ServerRule,
    *,
    client_optimizer: optax.GradientTransformation | None = None,
    num_clients: int | None = None,
) -> ServerState:
    """The state before round 0. Pass ``client_optimizer`` and ``num_clients`` to keep client
    optimizer states across rounds."""
    client_opt_state = None
    if client_optimizer is not None:
        client_opt_state = jax.vmap(client_optimizer.init)(broadcast_clients(params, num_clients))
    return ServerState(
        params=params,
        model_state=model_state,
        rule_state=server_rule.init(params),
        round=jnp.zeros((), jnp.int32),
        client_opt_state=client_opt_state,
    )


def make_round(
    model,
    client_optimizer: optax.GradientTransformation,
    server_rule: ServerRule | optax.GradientTransformation,
    *,
    batch_size: int,
    num_local_steps: int,
    divergence: bool = True,
    grad_divergence: bool = True,
):
    """Builds the pure round function (jit it: ``jax.jit(round_fn, donate_argnums=0)``).

    Args:
      model: a :class:`fedjax_deep.models.FunctionalModel`.
      client_optimizer: optax transformation used by every client.
      server_rule: a :class:`ServerRule`, or an optax transformation applied to the FedAvg
        pseudo-gradient (``optax.sgd(1.0)`` is FedAvg).
      batch_size, num_local_steps: ``B`` and ``S`` (static).
      divergence, grad_divergence: compute the divergence metrics / the gradient divergence.

    Returns:
      ``round_fn(server_state, client_data, key) -> (server_state, metrics)`` where
      ``client_data`` is a :class:`ClientData` (``x [C, N, ...]``), ``key`` this round's PRNG key,
      and ``metrics`` a flat dict of scalars: ``train/loss``, ``train/accuracy`` (example-weighted
      over clients), ``train/num_examples`` and ``divergence/...``.
    """
    if not isinstance(server_rule, ServerRule):
        server_rule = fedavg(server_rule)
    client_update = make_client_update(model, client_optimizer)
    client_grad = make_client_grad(model)

    def round_fn(
        server_state: ServerState, client_data: ClientData, key: jax.Array
    ) -> tuple[ServerState, Metrics]:
        num_clients = client_data.num_clients
        dtype = jax.tree.leaves(server_state.params)[0].dtype
        weights = normalized_weights(client_data.num_examples, dtype)
        batch_keys, train_keys = round_client_keys(key, client_data.client_ids)
        idx, mask = round_batch_indices(
            batch_keys,
            client_data.num_examples,
            client_data.max_examples,
            batch_size,
            num_local_steps,
        )
        data = {"x": client_data.x, "y": client_data.y}

        client_params = broadcast_clients(server_state.params, num_clients)
        client_model_state = broadcast_clients(server_state.model_state, num_clients)
        if server_state.client_opt_state is not None:
            client_opt_state = server_state.client_opt_state
        else:
            client_opt_state = jax.vmap(client_optimizer.init)(client_params)
        client_state = ClientState(client_params, client_model_state, client_opt_state)

        client_grads = None
        if divergence and grad_divergence:

            def first_batch_grad(x, y, idx0, mask0):
                batch = {"x": x[idx0], "y": y[idx0], "mask": mask0}
                return client_grad(server_state.params, server_state.model_state, batch)

            client_grads = jax.vmap(first_batch_grad)(data["x"], data["y"], idx[:, 0], mask[:, 0])

        client_state, client_metrics = jax.vmap(client_update)(
            client_state, {"idx": idx, "mask": mask}, train_keys, data
        )

        metrics: Metrics = {}
        if divergence:
            metrics.update(
                divergence_metrics(
                    client_state.params, server_state.params, weights, model.layers, client_grads
                )
            )
        params, rule_state = server_rule.apply(
            server_state.params, server_state.rule_state, client_state.params, weights
        )
        new_state = ServerState(
            params=params,
            model_state=weighted_mean(client_state.model_state, weights),
            rule_state=rule_state,
            round=server_state.round + 1,
            client_opt_state=(
                client_state.opt_state if server_state.client_opt_state is not None else None
            ),
        )
        seen = client_metrics["num_examples"]
        seen_weights = seen / jnp.maximum(jnp.sum(seen), 1.0)
        metrics["train/loss"] = jnp.sum(seen_weights * client_metrics["loss"])
        metrics["train/accuracy"] = jnp.sum(seen_weights * client_metrics["accuracy"])
        metrics["train/num_examples"] = jnp.sum(seen)
        return new_state, metrics

    return round_fn
