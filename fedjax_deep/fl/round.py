"""The federated round: one pure function that advances every client and the server.

``round_fn(sim_state, client_data, key) -> (sim_state, metrics)``, built by :func:`make_round`
and meant to be jitted once per experiment (shapes never change between rounds). In call order:

1. the cohort (with ``cohort_size``): drawn with the key, and its rows of the per-client state
   gathered from the population (:mod:`fedjax_deep.fl.state`);
2. batches and keys: every client's shuffled batch indices for its ``S`` local steps, drawn on the
   device with the key ``fold_in(key, client_id)`` (:func:`round_client_keys`);
3. the gradient of each client at the shared global model on its first batch (gradient divergence);
4. local training of every client from where the algorithm starts it, mapped over the client axis
   by the round's :class:`~fedjax_deep.fl.execution.Execution` (one vmap, chunks, or sharded);
5. the divergence metrics of every layer (reductions over the client axis);
6. aggregation: the algorithm's server update from the clients' outputs (FedAvg: the
   example-weighted mean) and the weighted mean of BatchNorm statistics;
7. the new state, the cohort's rows scattered back into the population.

A federated :class:`~fedjax_deep.fl.algorithms.Algorithm` shapes steps 4 and 6: where each client
starts, a hook on every local gradient, what each client sends, and the server's update.
Centralized training is the same round with one client holding the union of the data and a client
optimizer state that persists across rounds (``SimState.clients['opt_state']``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from fedjax_deep.data.batching import ClientData, round_batch_indices
from fedjax_deep.fl import clients
from fedjax_deep.fl.algorithms import Algorithm, as_algorithm
from fedjax_deep.fl.client import ClientState, make_client_grad, make_client_update
from fedjax_deep.fl.execution import CLIENT_AXIS, Execution
from fedjax_deep.fl.state import SimState, gather_cohort, sample_cohort, scatter_cohort
from fedjax_deep.metrics.divergence import cka_metrics, divergence_metrics
from fedjax_deep.types import Metrics, ModelState, Params, PyTree


def make_round(
    model,
    client_optimizer: optax.GradientTransformation,
    algorithm: Algorithm | optax.GradientTransformation,
    *,
    batch_size: int,
    num_local_steps: int,
    divergence: bool = True,
    grad_divergence: bool = True,
    execution: Execution | None = None,
    augment=None,
    cohort_size: int = 0,
    draw_cohort: bool = True,
    skip_nonfinite: bool = False,
    cka_probe: jax.Array | None = None,
    loss_fn=None,
):
    """Builds the pure round function (jit it: ``jax.jit(round_fn, donate_argnums=0)``).

    Args:
      model: a :class:`fedjax_deep.models.FunctionalModel`.
      client_optimizer: optax transformation used by every client.
      algorithm: an :class:`~fedjax_deep.fl.algorithms.Algorithm`, or an optax transformation
        applied to the FedAvg pseudo-gradient (``optax.sgd(1.0)`` is FedAvg).
      batch_size, num_local_steps: ``B`` and ``S`` (static).
      divergence, grad_divergence: compute the divergence metrics / the gradient divergence.
      execution: how clients run (:class:`Execution`; default: one vmap over all clients). With a
        mesh, ``client_data`` (and the per-client state) must be sharded over it
        (``shard_clients``) with a client count divisible by its size (``pad_clients``), and the
        rest replicated (``replicate``).
      augment: optional on-device augmentation ``(key, x) -> x`` applied to every local batch.
      cohort_size: if > 0, each round trains ``cohort_size`` clients of a larger population; the
        per-client state (``SimState.clients``) is kept for the whole population and the cohort's
        rows are gathered and scattered back by client id. The cohort's shape is fixed, so the
        round never recompiles.
      draw_cohort: with ``cohort_size``, draw the cohort from ``client_data`` (the population),
        uniformly without replacement among the clients that hold data, with a key split from the
        round's key (so the draw is reproducible). False: ``client_data`` already is the cohort,
        drawn by the caller (on the host, say, with the same split: :func:`sample_cohort`).
      skip_nonfinite: drop client updates whose parameters or loss went non-finite (weight 0,
        counted in ``train/skipped_clients``) instead of letting them poison the average.
      cka_probe: optional fixed inputs ``[P, *input_shape]``: with ``divergence``, every round
        also logs the linear CKA between the clients' trained models' layer activations on them
        (``divergence/<layer>/cka``, :func:`~fedjax_deep.metrics.divergence.cka_metrics`).
      loss_fn: the clients' :data:`~fedjax_deep.losses.Loss` (default: softmax cross entropy);
        every metric it reports is logged as ``train/<metric>``.

    Returns:
      ``round_fn(sim_state, client_data, key) -> (sim_state, metrics)`` where ``client_data`` is
      a :class:`ClientData` (``x [C, N, ...]``), ``key`` this round's PRNG key, and ``metrics`` a
      flat dict of scalars: ``train/loss`` and ``train/<metric>`` for each metric of the loss
      (``train/accuracy`` by default; example-weighted over clients),
      ``train/num_examples`` and ``divergence/...``. Every strategy computes the same function
      (up to float reduction order).
    """
    algorithm = as_algorithm(algorithm)
    execution = execution or Execution()
    axis, chunk = execution.axis_name, execution.chunk_size
    train_client = _make_train_client(
        model, client_optimizer, algorithm, augment, skip_nonfinite, loss_fn
    )
    client_grad = make_client_grad(model, loss_fn)

    def round_body(state: SimState, client_data: ClientData, key: jax.Array):
        """One round of ``client_data``'s clients (this device's when sharded)."""
        # Batches and keys.
        batch_keys, train_keys = round_client_keys(key, client_data.client_ids)
        idx, mask = round_batch_indices(
            batch_keys,
            client_data.num_examples,
            client_data.max_examples,
            batch_size,
            num_local_steps,
        )
        data = {"x": client_data.x, "y": client_data.y}
        dtype = jax.tree.leaves(state.params)[0].dtype
        weights = clients.normalized_weights(client_data.num_examples, dtype, axis)
        start = _shared_start(state, client_optimizer, axis)
        metrics: Metrics = {}

        # The gradient at the shared point.
        client_grads = None
        if divergence and grad_divergence:

            def first_batch_grad(x, y, idx0, mask0):
                batch = {"x": x[idx0], "y": y[idx0], "mask": mask0}
                # The varying copies: a gradient taken with respect to an invariant (replicated)
                # value would be summed over the devices by shard_map's transpose rule.
                return client_grad(start.params, start.model_state, batch)

            client_grads = clients.map(
                first_batch_grad, (data["x"], data["y"], idx[:, 0], mask[:, 0]), chunk
            )

        # Local training.
        trained = clients.map(
            functools.partial(train_client, start),
            (state.clients, {"idx": idx, "mask": mask}, train_keys, data),
            chunk,
        )
        if skip_nonfinite:
            weights, metrics["train/skipped_clients"] = _drop_nonfinite(
                weights, trained.finite, client_data.num_examples, axis
            )

        # Divergence.
        if divergence:
            metrics.update(
                divergence_metrics(
                    trained.state.params,
                    state.params,
                    weights,
                    model.layers,
                    client_grads,
                    axis_name=axis,
                )
            )
            if cka_probe is not None:
                client_reps = clients.map(
                    lambda p, s: model.representations(p, s, cka_probe),
                    (trained.state.params, trained.state.model_state),
                    chunk,
                )
                metrics.update(cka_metrics(client_reps, weights, axis))

        # Aggregation and the new state.
        new_state = _aggregate(algorithm, state, trained, weights, axis)
        if skip_nonfinite:
            new_state = _keep_server_if_all_skipped(new_state, state, weights, axis)
        metrics.update(_train_metrics(trained.metrics, axis))
        return new_state, metrics

    body = _over_devices(round_body, execution.mesh)
    if not cohort_size:
        return body

    def round_fn(state: SimState, client_data: ClientData, key: jax.Array):
        if draw_cohort:
            key, cohort_key = jax.random.split(key)
            ids = sample_cohort(cohort_key, client_data.num_examples, cohort_size)
            client_data = jax.tree.map(lambda a: a[ids], client_data)
        cohort = gather_cohort(state, client_data.client_ids)
        new_cohort, metrics = body(cohort, client_data, key)
        return scatter_cohort(state, new_cohort, client_data.client_ids), metrics

    return round_fn


def round_client_keys(key: jax.Array, client_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each client's keys for a round: ``(batch_keys [C], train_keys [C])``.

    Derived as ``fold_in(fold_in(key, client_id), 0 or 1)``: a client's draws depend only on the round
    key and its global id, never on the cohort's order or size, so a resumed run draws the same.
    """
    client_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, client_ids)
    batch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(client_keys, 0)
    train_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(client_keys, 1)
    return batch_keys, train_keys


class _Start(NamedTuple):
    """Where a client starts unless it keeps its own: one copy, closed over by every client
    (varying over the client axis when sharded)."""

    params: Params
    model_state: ModelState
    opt_state: optax.OptState  # a fresh client optimizer state with this simulation's hparams
    rule_state: PyTree


class _Trained(NamedTuple):
    """What local training gives back, per client (``[C, ...]`` once mapped)."""

    state: ClientState  # the trained model, its BatchNorm statistics and optimizer state
    output: PyTree  # what the algorithm sends the server
    persistent: PyTree  # the algorithm's per-client state after the round
    metrics: Metrics
    finite: jax.Array | None  # the update stayed finite (None without skip_nonfinite)


def _shared_start(state: SimState, client_optimizer, axis: str | None) -> _Start:
    # Clients start from the replicated server model and then differ per device: tell shard_map's
    # type system that these values vary over the client axis.
    params, model_state, rule_state, hparams = clients.varying(
        (state.params, state.model_state, state.rule_state, state.client_hparams), axis
    )
    opt_state = client_optimizer.init(params)
    if hparams:
        # A fresh state takes this simulation's hyper-parameters (a sweep member's own).
        opt_state = opt_state._replace(hyperparams=hparams)
    return _Start(params, model_state, opt_state, rule_state)


def _make_train_client(
    model, client_optimizer, algorithm: Algorithm, augment, skip_nonfinite, loss_fn=None
):
    """``train_client(start, own, batches, key, data) -> _Trained``: one client's round.

    ``own`` is the client's rows of the per-client state (``SimState.clients``): what it keeps
    across rounds replaces the shared start.
    """
    client_update = make_client_update(
        model, client_optimizer, augment, algorithm.grad_hook, loss_fn
    )

    def train_client(start: _Start, own: dict, batches, train_key, data) -> _Trained:
        params = own.get("params", start.params)
        if "algorithm" in own:
            persistent = own["algorithm"]
        else:
            persistent = algorithm.persistent_init(params)
        params, ctx = algorithm.client_init(start.rule_state, persistent, params)
        begin = ClientState(
            params, own.get("model_state", start.model_state), own.get("opt_state", start.opt_state)
        )
        end, metrics = client_update(begin, batches, train_key, data, ctx)
        finite = None
        if skip_nonfinite:
            end, metrics, finite = _guard_nonfinite(begin, end, metrics)
        output, persistent = algorithm.client_final(
            start.rule_state, params, end.params, ctx, persistent, metrics["num_steps"]
        )
        return _Trained(end, output, persistent, metrics, finite)

    return train_client


def _guard_nonfinite(begin: ClientState, end: ClientState, metrics: Metrics):
    """A client whose update went non-finite keeps its start (so no NaN reaches the sums) and took
    no step as far as the algorithm is concerned; ``finite`` says which."""
    leaves = jax.tree.leaves(end.params)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
    finite = finite & jnp.isfinite(metrics["loss"])
    end = jax.tree.map(lambda n, o: jnp.where(finite, n, o), end, begin)
    metrics = {k: jnp.where(finite, v, 0) for k, v in metrics.items()}
    return end, metrics, finite


def _drop_nonfinite(weights, finite, num_examples, axis):
    """The weights renormalized over the clients whose update stayed finite (0 for the others),
    and how many clients that hold data were dropped."""
    skipped = (~finite) & (num_examples > 0)
    kept = weights * finite.astype(weights.dtype)
    total = clients.sum(kept, axis)
    weights = jnp.where(total > 0, kept / jnp.where(total > 0, total, 1.0), 0.0)
    return weights, clients.sum(skipped.astype(jnp.int32), axis)


def _aggregate(algorithm: Algorithm, state: SimState, trained: _Trained, weights, axis):
    """The server's update and the state after the round (the per-client rows that persist)."""
    params, rule_state = algorithm.server_apply(
        state.params, state.rule_state, trained.output, weights, axis
    )
    rows = {
        "opt_state": trained.state.opt_state,
        "model_state": trained.state.model_state,
        "params": trained.state.params,
        "algorithm": trained.persistent,
    }
    return SimState(
        params=params,
        model_state=clients.weighted_mean(trained.state.model_state, weights, axis),
        rule_state=rule_state,
        round=state.round + 1,
        clients={name: rows[name] for name in state.clients},
        client_hparams=state.client_hparams,
    )


def _keep_server_if_all_skipped(new_state: SimState, state: SimState, weights, axis) -> SimState:
    """Every client skipped: the server keeps its model (a mean of nothing is not zero)."""
    any_kept = clients.sum(weights, axis) > 0
    keep = ("params", "model_state", "rule_state")
    return new_state.replace(**{
        name: jax.tree.map(lambda n, o: jnp.where(any_kept, n, o),
                           getattr(new_state, name), getattr(state, name))
        for name in keep
    })  # fmt: skip


def _train_metrics(client_metrics: Metrics, axis) -> Metrics:
    """The loss and each metric of the loss weighted by the examples each client saw, and their
    count."""
    seen = client_metrics["num_examples"]
    total_seen = clients.sum(seen, axis)
    seen_weights = seen / jnp.maximum(total_seen, 1.0)
    means = {f"train/{name}": clients.sum(seen_weights * value, axis)
             for name, value in client_metrics.items()
             if name not in ("num_examples", "num_steps")}  # fmt: skip
    return {**means, "train/num_examples": total_seen}


def _over_devices(round_body, mesh):
    """``round_body`` under ``shard_map`` over the mesh's client axis (as it is without a mesh):
    per-client state and client data split over the devices, the rest replicated."""
    if mesh is None:
        return round_body

    def sharded(state: SimState, client_data: ClientData, key: jax.Array):
        spec = SimState(
            params=P(),
            model_state=P(),
            rule_state=P(),
            round=P(),
            clients=jax.tree.map(lambda _: P(CLIENT_AXIS), state.clients),
            client_hparams=jax.tree.map(lambda _: P(), state.client_hparams),
        )
        return jax.shard_map(
            round_body,
            mesh=mesh,
            in_specs=(spec, P(CLIENT_AXIS), P()),
            out_specs=(spec, P()),
        )(state, client_data, key)

    return sharded
