"""The federated round: one pure function that advances every client and the server.

``round_fn(server_state, client_data, key) -> (server_state, metrics)``, built by :func:`make_round`
and meant to be jitted once per experiment (shapes never change between rounds):

1. every client's shuffled batch indices for its ``S`` local steps, drawn on the device with the key
   ``fold_in(key, client_id)``;
2. the server model broadcast to ``C`` clients;
3. each client's gradient at the shared global model on its first batch (gradient divergence);
4. local training of all clients (:func:`make_client_update`'s function mapped over the client axis
   by the round's :class:`~fedjax_deep.fl.execution.Execution`: one vmap, chunks, or sharded);
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
from jax.sharding import PartitionSpec as P

from fedjax_deep.aggregation import ServerRule, fedavg, normalized_weights, weighted_mean
from fedjax_deep.data.batching import ClientData, round_batch_indices
from fedjax_deep.fl.client import ClientState, make_client_grad, make_client_update
from fedjax_deep.fl.execution import CLIENT_AXIS, Execution, client_sum, map_clients
from fedjax_deep.metrics.divergence import divergence_metrics
from fedjax_deep.types import Metrics, ModelState, Params, PyTree


@struct.dataclass
class ServerState:
    """Everything the round carries from one round to the next.

    Attributes:
      params: the global model.
      model_state: the global model's BatchNorm statistics (``{}`` without BatchNorm): the
        example-weighted mean of the clients' statistics after each round. With local statistics
        (FedBN) it is used only to evaluate the global model.
      rule_state: the server rule's state (the server optimizer's optax state for FedAvg).
      round: int32 scalar, rounds completed.
      client_opt_state: ``[C, ...]`` client optimizer states when they persist across rounds
        (centralized mode, stateful clients), else ``None``: clients start each round afresh.
      client_model_state: ``[C, ...]`` each client's own BatchNorm statistics when they stay
        local (FedBN-style: clients start every round from their own statistics), else ``None``:
        clients start from the server's averaged statistics.
      client_params: ``[C, ...]`` each client's own model when clients train independently and are
        never averaged (the centralized null reference, E7: K SGD runs from one initialization);
        ``params`` is then their weighted mean, used only as the reference point ``g``.
    """

    params: Params
    model_state: ModelState
    rule_state: PyTree
    round: jax.Array
    client_opt_state: PyTree | None = None
    client_model_state: PyTree | None = None
    client_params: PyTree | None = None


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
    local_model_state: bool = False,
    independent: bool = False,
) -> ServerState:
    """The state before round 0. Pass ``client_optimizer`` and ``num_clients`` to keep client
    optimizer states across rounds; ``local_model_state=True`` (with ``num_clients``) to keep each
    client's BatchNorm statistics local (FedBN); ``independent=True`` to keep each client's model
    (no averaging: independent runs from one initialization)."""
    client_opt_state = None
    if client_optimizer is not None:
        client_opt_state = jax.vmap(client_optimizer.init)(broadcast_clients(params, num_clients))
    client_model_state = None
    if local_model_state:
        client_model_state = jax.tree.map(jnp.copy, broadcast_clients(model_state, num_clients))
    return ServerState(
        params=params,
        model_state=model_state,
        rule_state=server_rule.init(params),
        round=jnp.zeros((), jnp.int32),
        client_opt_state=client_opt_state,
        client_model_state=client_model_state,
        client_params=(
            jax.tree.map(jnp.copy, broadcast_clients(params, num_clients)) if independent else None
        ),
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
    execution: Execution | None = None,
    augment=None,
    cohort_size: int = 0,
    skip_nonfinite: bool = False,
):
    """Builds the pure round function (jit it: ``jax.jit(round_fn, donate_argnums=0)``).

    Args:
      model: a :class:`fedjax_deep.models.FunctionalModel`.
      client_optimizer: optax transformation used by every client.
      server_rule: a :class:`ServerRule`, or an optax transformation applied to the FedAvg
        pseudo-gradient (``optax.sgd(1.0)`` is FedAvg).
      batch_size, num_local_steps: ``B`` and ``S`` (static).
      divergence, grad_divergence: compute the divergence metrics / the gradient divergence.
      execution: how clients run (:class:`Execution`; default: one vmap over all clients). With a
        mesh, ``client_data`` (and a persisted ``client_opt_state``) must be sharded over it
        (``shard_clients``) with a client count divisible by its size (``pad_clients``), and the
        rest replicated (``replicate``).
      augment: optional on-device augmentation ``(key, x) -> x`` applied to every local batch.
      cohort_size: if > 0, each round trains ``cohort_size`` clients drawn uniformly without
        replacement from the clients of ``client_data`` that hold data (the key decides, so the
        draw is reproducible); the cohort's shape is fixed, so the round never recompiles.
        Per-client state that persists (``client_opt_state``, ``client_model_state``) is kept for
        the whole population and gathered/scattered by client id.
      skip_nonfinite: drop client updates whose parameters or loss went non-finite (weight 0,
        counted in ``train/skipped_clients``) instead of letting them poison the average.

    Returns:
      ``round_fn(server_state, client_data, key) -> (server_state, metrics)`` where
      ``client_data`` is a :class:`ClientData` (``x [C, N, ...]``), ``key`` this round's PRNG key,
      and ``metrics`` a flat dict of scalars: ``train/loss``, ``train/accuracy`` (example-weighted
      over clients), ``train/num_examples`` and ``divergence/...``. Every strategy computes the
      same function (up to float reduction order).
    """
    if not isinstance(server_rule, ServerRule):
        server_rule = fedavg(server_rule)
    execution = execution or Execution()
    chunk = execution.chunk_size
    axis = execution.axis_name
    client_update = make_client_update(model, client_optimizer, augment)
    client_grad = make_client_grad(model)

    def round_body(
        server_state: ServerState, client_data: ClientData, key: jax.Array
    ) -> tuple[ServerState, Metrics]:
        num_clients = client_data.num_clients  # device-local when sharded
        dtype = jax.tree.leaves(server_state.params)[0].dtype
        weights = normalized_weights(client_data.num_examples, dtype, axis)
        batch_keys, train_keys = round_client_keys(key, client_data.client_ids)
        idx, mask = round_batch_indices(
            batch_keys,
            client_data.num_examples,
            client_data.max_examples,
            batch_size,
            num_local_steps,
        )
        data = {"x": client_data.x, "y": client_data.y}
        persist = server_state.client_opt_state is not None
        start_params, start_model_state = server_state.params, server_state.model_state
        if axis:
            # Clients start from the replicated server model and then differ per device: tell
            # shard_map's type system the carry varies over the client axis.
            start_params, start_model_state = jax.tree.map(
                lambda x: jax.lax.pcast(x, axis, to="varying"), (start_params, start_model_state)
            )

        independent = server_state.client_params is not None

        def train_client(params, opt_state, model_state, client_batches, train_key, examples):
            if not independent:
                params = start_params  # closed over: one copy, not C
            state = ClientState(params, model_state, opt_state)
            return client_update(state, client_batches, train_key, examples)

        local_stats = server_state.client_model_state is not None
        if local_stats:
            client_model_state = server_state.client_model_state
        else:
            client_model_state = broadcast_clients(start_model_state, num_clients)

        if persist:
            client_opt_state = server_state.client_opt_state
        else:
            client_opt_state = jax.vmap(client_optimizer.init)(
                broadcast_clients(start_params, num_clients)
            )

        client_grads = None
        if divergence and grad_divergence:

            def first_batch_grad(x, y, idx0, mask0):
                batch = {"x": x[idx0], "y": y[idx0], "mask": mask0}
                # The varying copies: a gradient taken with respect to an invariant (replicated)
                # value would be summed over the devices by shard_map's transpose rule.
                return client_grad(start_params, start_model_state, batch)

            client_grads = map_clients(
                first_batch_grad, (data["x"], data["y"], idx[:, 0], mask[:, 0]), chunk
            )

        client_state, client_metrics = map_clients(
            train_client,
            (
                server_state.client_params if independent else jnp.zeros((num_clients,)),
                client_opt_state,
                client_model_state,
                {"idx": idx, "mask": mask},
                train_keys,
                data,
            ),
            chunk,
        )

        metrics: Metrics = {}
        if skip_nonfinite:
            # A client whose update went non-finite gets weight 0 and the server's parameters
            # (so no NaN * 0 reaches the sums); the rest are re-weighted to sum to one.
            finite = jax.vmap(
                lambda p, loss: (
                    jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(p)]))
                    & jnp.isfinite(loss)
                )
            )(client_state.params, client_metrics["loss"])
            skipped = (~finite) & (client_data.num_examples > 0)
            metrics["train/skipped_clients"] = client_sum(skipped.astype(jnp.int32), axis)
            kept = weights * finite.astype(weights.dtype)
            total = client_sum(kept, axis)
            weights = jnp.where(total > 0, kept / jnp.where(total > 0, total, 1.0), 0.0)

            def keep_finite(client_tree, server_tree):
                return jax.tree.map(
                    lambda c, g: jnp.where(finite.reshape((-1,) + (1,) * (c.ndim - 1)), c, g[None]),
                    client_tree,
                    server_tree,
                )

            client_state = client_state.replace(
                params=keep_finite(client_state.params, start_params),
                model_state=keep_finite(client_state.model_state, start_model_state),
            )
            client_metrics = {k: jnp.where(finite, v, 0) for k, v in client_metrics.items()}
        if divergence:
            metrics.update(
                divergence_metrics(
                    client_state.params,
                    server_state.params,
                    weights,
                    model.layers,
                    client_grads,
                    axis_name=axis,
                )
            )
        params, rule_state = server_rule.apply(
            server_state.params, server_state.rule_state, client_state.params, weights, axis
        )
        new_state = ServerState(
            params=params,
            model_state=weighted_mean(client_state.model_state, weights, axis),
            rule_state=rule_state,
            round=server_state.round + 1,
            client_opt_state=client_state.opt_state if persist else None,
            client_model_state=client_state.model_state if local_stats else None,
            client_params=client_state.params if independent else None,
        )
        if skip_nonfinite:
            # Every client skipped: the server keeps its model (a mean of nothing is not zero).
            any_kept = client_sum(weights, axis) > 0
            new_state = new_state.replace(
                params=jax.tree.map(
                    lambda n, o: jnp.where(any_kept, n, o), new_state.params, server_state.params
                ),
                model_state=jax.tree.map(
                    lambda n, o: jnp.where(any_kept, n, o),
                    new_state.model_state,
                    server_state.model_state,
                ),
                rule_state=jax.tree.map(
                    lambda n, o: jnp.where(any_kept, n, o),
                    new_state.rule_state,
                    server_state.rule_state,
                ),
            )
        seen = client_metrics["num_examples"]
        total_seen = client_sum(seen, axis)
        seen_weights = seen / jnp.maximum(total_seen, 1.0)
        metrics["train/loss"] = client_sum(seen_weights * client_metrics["loss"], axis)
        metrics["train/accuracy"] = client_sum(seen_weights * client_metrics["accuracy"], axis)
        metrics["train/num_examples"] = total_seen
        return new_state, metrics

    def run_body(server_state: ServerState, client_data: ClientData, key: jax.Array):
        if execution.mesh is None:
            return round_body(server_state, client_data, key)
        state_spec = ServerState(
            params=P(),
            model_state=P(),
            rule_state=P(),
            round=P(),
            client_opt_state=None if server_state.client_opt_state is None else P(CLIENT_AXIS),
            client_model_state=(
                None if server_state.client_model_state is None else P(CLIENT_AXIS)
            ),
            client_params=None if server_state.client_params is None else P(CLIENT_AXIS),
        )
        sharded = jax.shard_map(
            round_body,
            mesh=execution.mesh,
            in_specs=(state_spec, P(CLIENT_AXIS), P()),
            out_specs=(state_spec, P()),
        )
        return sharded(server_state, client_data, key)

    def round_fn(server_state: ServerState, client_data: ClientData, key: jax.Array):
        if cohort_size:
            key, cohort_key = jax.random.split(key)
            ids = sample_cohort(cohort_key, client_data.num_examples, cohort_size)
            client_data = jax.tree.map(lambda a: a[ids], client_data)
        # Per-client state is held for the whole population; the round sees its cohort's rows.
        ids = client_data.client_ids
        population = {}
        for name in ("client_opt_state", "client_model_state", "client_params"):
            value = getattr(server_state, name)
            leaves = jax.tree.leaves(value)  # None or an empty state (plain SGD): nothing kept
            if leaves and leaves[0].shape[0] != client_data.num_clients:
                population[name] = value
        if population:
            server_state = server_state.replace(
                **{n: jax.tree.map(lambda a: a[ids], v) for n, v in population.items()}
            )
        new_state, metrics = run_body(server_state, client_data, key)
        if population:
            new_state = new_state.replace(
                **{
                    n: jax.tree.map(lambda p, c: p.at[ids].set(c), v, getattr(new_state, n))
                    for n, v in population.items()
                }
            )
        return new_state, metrics

    return round_fn


def sample_cohort(key: jax.Array, num_examples: jax.Array, cohort_size: int) -> jax.Array:
    """``cohort_size`` client indices drawn uniformly without replacement among the clients that
    hold data (``num_examples [P] > 0``; padding clients are never drawn): ``[cohort_size]``."""
    scores = jax.random.uniform(key, num_examples.shape)
    return jnp.argsort(jnp.where(num_examples > 0, scores, 2.0))[:cohort_size].astype(jnp.int32)


def make_seeded_round(round_fn):
    """Runs independent seeds of one experiment together: ``round_fn`` vmapped over a leading seed
    axis of ``(server_state, client_data, key)`` (every leaf gets ``[num_seeds, ...]``).

    Seeds must share shapes (the same model, client count and padded client size); use
    :func:`stack_seeds` to build the inputs. One compiled program then advances every seed.
    """
    return jax.vmap(round_fn)


def stack_seeds(trees):
    """Stacks per-seed pytrees of equal structure and shapes on a new leading seed axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
