"""The federated round: one pure function that advances every client and the server.

``round_fn(sim_state, client_data, key) -> (sim_state, metrics)``, built by :func:`make_round`
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

A federated :class:`~fedjax_deep.fl.algorithms.Algorithm` shapes steps 2, 4 and 6: where each
client starts, a hook on every local gradient, what each client sends, and the server's update.
Centralized training is the same round with one client holding the union of the data and a client
optimizer state that persists across rounds (``SimState.clients['opt_state']``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import PartitionSpec as P

from fedjax_deep.aggregation import ServerRule, normalized_weights, weighted_mean
from fedjax_deep.data.batching import ClientData, round_batch_indices
from fedjax_deep.fl import algorithms
from fedjax_deep.fl.algorithms import Algorithm
from fedjax_deep.fl.client import ClientState, make_client_grad, make_client_update
from fedjax_deep.fl.execution import CLIENT_AXIS, Execution, client_sum, map_clients
from fedjax_deep.metrics.divergence import cka_metrics, divergence_metrics
from fedjax_deep.types import Metrics, ModelState, Params, PyTree


@struct.dataclass
class SimState:
    """The whole simulation between rounds: the server's side and every client's persistent state.

    Attributes:
      params: the global model.
      model_state: the global model's BatchNorm statistics (``{}`` without BatchNorm): the
        example-weighted mean of the clients' statistics after each round. With local statistics
        (FedBN) it is used only to evaluate the global model.
      rule_state: the algorithm's server state (the server optimizer's optax state for FedAvg;
        SCAFFOLD's control variate; FedDyn's ``h``).
      round: int32 scalar, rounds completed.
      clients: per-client state that persists across rounds, for the whole population: a dict of
        pytrees whose leaves are ``[P, ...]``, gathered for the cohort and scattered back, sharded,
        padded and checkpointed by one tree-map each. Keys (each present only when used):
        ``'opt_state'`` (client optimizer states: centralized mode, independent runs),
        ``'model_state'`` (each client's own BatchNorm statistics: ``fl.bn_stats=local``, FedBN),
        ``'params'`` (each client's own model: independent runs, E7's null reference, where
        ``params`` is only their weighted mean, the reference point ``g``), ``'algorithm'`` (the
        algorithm's per-client state: SCAFFOLD's ``c_i``, FedDyn's ``h_i``, FedBN's BatchNorm
        parameters).
      client_hparams: the client optimizer's injected hyper-parameters (``optax.inject_hyperparams``;
        ``{}`` when it injects none). Client optimizer states that start afresh every round take
        these values, so the members of a sweep, whose states are stacked, each train with their own
        learning rate in one compiled program.
    """

    params: Params
    model_state: ModelState
    rule_state: PyTree
    round: jax.Array
    clients: dict = struct.field(default_factory=dict)
    client_hparams: dict = struct.field(default_factory=dict)


# The name before the algorithms issue; the state holds the simulation, not only the server.
ServerState = SimState


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


def as_algorithm(rule) -> Algorithm:
    """An :class:`Algorithm`, a :class:`ServerRule` (its server side, FedAvg's clients) or an optax
    transformation (FedAvg's server optimizer) as an :class:`Algorithm`."""
    if isinstance(rule, Algorithm):
        return rule
    if isinstance(rule, ServerRule):
        return algorithms.fedavg()._replace(server_init=rule.init, server_apply=rule.apply)
    return algorithms.fedavg(rule)


def init_server_state(
    params: Params,
    model_state: ModelState,
    algorithm: Algorithm | ServerRule | optax.GradientTransformation,
    *,
    client_optimizer: optax.GradientTransformation | None = None,
    num_clients: int | None = None,
    local_model_state: bool = False,
    independent: bool = False,
    client_hparams: dict | None = None,
) -> SimState:
    """The state before round 0, for a population of ``num_clients`` when anything persists.

    ``client_optimizer``: keep client optimizer states across rounds; ``local_model_state``: keep
    each client's BatchNorm statistics local (FedBN); ``independent``: keep each client's model (no
    averaging: independent runs from one initialization); the algorithm's own per-client state
    (:attr:`Algorithm.persistent_init`) is kept whenever it has leaves.
    ``client_hparams``: the client optimizer's injected hyper-parameters (:func:`injected_hparams`).
    """
    algorithm = as_algorithm(algorithm)
    clients = {}
    if client_optimizer is not None:
        clients["opt_state"] = jax.vmap(client_optimizer.init)(
            broadcast_clients(params, num_clients)
        )
    if local_model_state:
        clients["model_state"] = broadcast_clients(model_state, num_clients)
    if independent:
        clients["params"] = broadcast_clients(params, num_clients)
    persistent = algorithm.persistent_init(params)
    if jax.tree.leaves(persistent):
        clients["algorithm"] = broadcast_clients(persistent, num_clients)
    return SimState(
        params=params,
        model_state=model_state,
        rule_state=algorithm.server_init(params),
        round=jnp.zeros((), jnp.int32),
        clients=jax.tree.map(jnp.copy, clients),
        client_hparams=dict(client_hparams or {}),
    )


def injected_hparams(optimizer: optax.GradientTransformation, params: Params) -> dict:
    """The hyper-parameters an ``optax.inject_hyperparams`` optimizer holds in its state (``{}``
    for any other optimizer)."""
    return dict(getattr(optimizer.init(params), "hyperparams", {}))


def make_round(
    model,
    client_optimizer: optax.GradientTransformation,
    algorithm: Algorithm | ServerRule | optax.GradientTransformation,
    *,
    batch_size: int,
    num_local_steps: int,
    divergence: bool = True,
    grad_divergence: bool = True,
    execution: Execution | None = None,
    augment=None,
    cohort_size: int = 0,
    skip_nonfinite: bool = False,
    cka_probe: jax.Array | None = None,
):
    """Builds the pure round function (jit it: ``jax.jit(round_fn, donate_argnums=0)``).

    Args:
      model: a :class:`fedjax_deep.models.FunctionalModel`.
      client_optimizer: optax transformation used by every client.
      algorithm: an :class:`~fedjax_deep.fl.algorithms.Algorithm`, a :class:`ServerRule`, or an
        optax transformation applied to the FedAvg pseudo-gradient (``optax.sgd(1.0)`` is FedAvg).
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
        Per-client state that persists (``SimState.clients``) is kept for the whole population and
        gathered/scattered by client id.
      skip_nonfinite: drop client updates whose parameters or loss went non-finite (weight 0,
        counted in ``train/skipped_clients``) instead of letting them poison the average.
      cka_probe: optional fixed inputs ``[P, *input_shape]``: with ``divergence``, every round
        also logs the linear CKA between the clients' trained models' layer activations on them
        (``divergence/<layer>/cka``, :func:`~fedjax_deep.metrics.divergence.cka_metrics`).

    Returns:
      ``round_fn(server_state, client_data, key) -> (server_state, metrics)`` where
      ``client_data`` is a :class:`ClientData` (``x [C, N, ...]``), ``key`` this round's PRNG key,
      and ``metrics`` a flat dict of scalars: ``train/loss``, ``train/accuracy`` (example-weighted
      over clients), ``train/num_examples`` and ``divergence/...``. Every strategy computes the
      same function (up to float reduction order).
    """
    algorithm = as_algorithm(algorithm)
    execution = execution or Execution()
    chunk = execution.chunk_size
    axis = execution.axis_name
    client_update = make_client_update(model, client_optimizer, augment, algorithm.grad_hook)
    client_grad = make_client_grad(model)

    def round_body(
        server_state: SimState, client_data: ClientData, key: jax.Array
    ) -> tuple[SimState, Metrics]:
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
        clients = server_state.clients
        start_params, start_model_state = server_state.params, server_state.model_state
        rule_state, client_hparams = server_state.rule_state, server_state.client_hparams
        if axis:
            # Clients start from the replicated server model and then differ per device: tell
            # shard_map's type system the carry varies over the client axis.
            start_params, start_model_state, rule_state, client_hparams = jax.tree.map(
                lambda x: jax.lax.pcast(x, axis, to="varying"),
                (start_params, start_model_state, rule_state, client_hparams),
            )
        # Each client's persistent rows (zeros of shape [C] stand in for what does not persist).
        none = jnp.zeros((num_clients,))
        own_params = clients.get("params", none)
        client_model_state = clients.get("model_state")
        if client_model_state is None:
            client_model_state = broadcast_clients(start_model_state, num_clients)
        client_opt_state = clients.get("opt_state")
        if client_opt_state is None:
            client_opt_state = jax.vmap(client_optimizer.init)(
                broadcast_clients(start_params, num_clients)
            )
        persistent = clients.get("algorithm", none)

        def train_client(params, opt_state, model_state, persistent, batches, train_key, examples):
            """One client's round: the algorithm's start, local training, the non-finite guard
            and the algorithm's output."""
            if "params" not in clients:
                params = start_params  # closed over: one copy, not C
            if "opt_state" not in clients and client_hparams:
                # A fresh state takes this simulation's hyper-parameters (a sweep member's own).
                opt_state = opt_state._replace(hyperparams=client_hparams)
            own = persistent if "algorithm" in clients else algorithm.persistent_init(params)
            params, ctx = algorithm.client_init(rule_state, own, params)
            state = ClientState(params, model_state, opt_state)
            end, metrics = client_update(state, batches, train_key, examples, ctx)
            num_steps = metrics["num_steps"]
            finite = jnp.ones((), bool)
            if skip_nonfinite:
                # A client whose update went non-finite keeps its start (so no NaN reaches the
                # sums), takes no step as far as the algorithm is concerned, and gets weight 0.
                leaves = jax.tree.leaves(end.params)
                finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
                finite = finite & jnp.isfinite(metrics["loss"])
                end = jax.tree.map(lambda n, o: jnp.where(finite, n, o), end, state)
                metrics = {k: jnp.where(finite, v, 0) for k, v in metrics.items()}
                num_steps = jnp.where(finite, num_steps, 0)
            output, own = algorithm.client_final(
                rule_state, params, end.params, ctx, own, num_steps
            )
            return end, output, own, metrics, finite

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

        client_state, outputs, new_persistent, client_metrics, finite = map_clients(
            train_client,
            (
                own_params,
                client_opt_state,
                client_model_state,
                persistent,
                {"idx": idx, "mask": mask},
                train_keys,
                data,
            ),
            chunk,
        )

        metrics: Metrics = {}
        if skip_nonfinite:
            skipped = (~finite) & (client_data.num_examples > 0)
            metrics["train/skipped_clients"] = client_sum(skipped.astype(jnp.int32), axis)
            kept = weights * finite.astype(weights.dtype)
            total = client_sum(kept, axis)
            weights = jnp.where(total > 0, kept / jnp.where(total > 0, total, 1.0), 0.0)
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
            if cka_probe is not None:
                client_reps = map_clients(
                    lambda p, s: model.representations(p, s, cka_probe),
                    (client_state.params, client_state.model_state),
                    chunk,
                )
                metrics.update(cka_metrics(client_reps, weights, axis))
        params, rule_state = algorithm.server_apply(
            server_state.params, server_state.rule_state, outputs, weights, axis
        )
        new_clients = {
            "opt_state": client_state.opt_state,
            "model_state": client_state.model_state,
            "params": client_state.params,
            "algorithm": new_persistent,
        }
        new_state = SimState(
            params=params,
            model_state=weighted_mean(client_state.model_state, weights, axis),
            rule_state=rule_state,
            round=server_state.round + 1,
            clients={name: new_clients[name] for name in clients},
            client_hparams=server_state.client_hparams,
        )
        if skip_nonfinite:
            # Every client skipped: the server keeps its model (a mean of nothing is not zero).
            any_kept = client_sum(weights, axis) > 0
            keep = ("params", "model_state", "rule_state")
            new_state = new_state.replace(**{
                name: jax.tree.map(lambda n, o: jnp.where(any_kept, n, o),
                                   getattr(new_state, name), getattr(server_state, name))
                for name in keep
            })  # fmt: skip
        seen = client_metrics["num_examples"]
        total_seen = client_sum(seen, axis)
        seen_weights = seen / jnp.maximum(total_seen, 1.0)
        metrics["train/loss"] = client_sum(seen_weights * client_metrics["loss"], axis)
        metrics["train/accuracy"] = client_sum(seen_weights * client_metrics["accuracy"], axis)
        metrics["train/num_examples"] = total_seen
        return new_state, metrics

    def run_body(server_state: SimState, client_data: ClientData, key: jax.Array):
        if execution.mesh is None:
            return round_body(server_state, client_data, key)
        state_spec = SimState(
            params=P(),
            model_state=P(),
            rule_state=P(),
            round=P(),
            clients=jax.tree.map(lambda _: P(CLIENT_AXIS), server_state.clients),
            client_hparams=jax.tree.map(lambda _: P(), server_state.client_hparams),
        )
        sharded = jax.shard_map(
            round_body,
            mesh=execution.mesh,
            in_specs=(state_spec, P(CLIENT_AXIS), P()),
            out_specs=(state_spec, P()),
        )
        return sharded(server_state, client_data, key)

    def round_fn(server_state: SimState, client_data: ClientData, key: jax.Array):
        if cohort_size:
            key, cohort_key = jax.random.split(key)
            ids = sample_cohort(cohort_key, client_data.num_examples, cohort_size)
            client_data = jax.tree.map(lambda a: a[ids], client_data)
        # Per-client state is held for the whole population; the round sees its cohort's rows.
        ids = client_data.client_ids
        leaves = jax.tree.leaves(server_state.clients)
        gather = bool(leaves) and leaves[0].shape[0] != client_data.num_clients
        population = server_state.clients
        if gather:
            server_state = server_state.replace(clients=jax.tree.map(lambda a: a[ids], population))
        new_state, metrics = run_body(server_state, client_data, key)
        if gather:
            new_state = new_state.replace(
                clients=jax.tree.map(lambda p, c: p.at[ids].set(c), population, new_state.clients)
            )
        return new_state, metrics

    return round_fn


def sample_cohort(key: jax.Array, num_examples: jax.Array, cohort_size: int) -> jax.Array:
    """``cohort_size`` client indices drawn uniformly without replacement among the clients that
    hold data (``num_examples [P] > 0``; padding clients are never drawn): ``[cohort_size]``."""
    scores = jax.random.uniform(key, num_examples.shape)
    return jnp.argsort(jnp.where(num_examples > 0, scores, 2.0))[:cohort_size].astype(jnp.int32)


def sweep_over_members(fn, how: str = "vmap", in_axes=0):
    """``fn`` over a leading sweep (member) axis: independent simulations that share shapes, such as
    the seeds and learning rates of a sweep, advanced by one compiled program.

    Args:
      fn: e.g. a round function ``(sim_state, client_data, key) -> (sim_state, metrics)``.
      how: ``'vmap'`` (one batched program: fills an accelerator) or ``'map'`` (``lax.map``: one
        member after another inside the program, each computing exactly what it computes alone).
      in_axes: per argument, ``0`` (stacked ``[R, ...]``: :func:`stack_members`) or ``None``
        (shared by every member, passed once: data that members have in common).

    Each member's hyper-parameters travel in its own state (``optax.inject_hyperparams``, the
    algorithms' coefficients), so stacking the states is all it takes to sweep them.
    """
    if how == "vmap":
        return jax.vmap(fn, in_axes=in_axes)
    if how != "map":
        raise ValueError(f"how={how!r}: use 'vmap' or 'map'")

    def mapped(*args):
        axes = in_axes if isinstance(in_axes, tuple | list) else (in_axes,) * len(args)
        stacked = tuple(a for a, ax in zip(args, axes, strict=True) if ax == 0)

        def one(xs):
            it = iter(xs)
            return fn(*(next(it) if ax == 0 else a for a, ax in zip(args, axes, strict=True)))

        return jax.lax.map(one, stacked)

    return mapped


def stack_members(trees):
    """Stacks pytrees of equal structure and shapes on a new leading sweep axis ``[R, ...]``."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def make_seeded_round(round_fn):
    """``round_fn`` vmapped over a leading seed axis (:func:`sweep_over_members` with ``'vmap'``)."""
    return sweep_over_members(round_fn, "vmap")


stack_seeds = stack_members
