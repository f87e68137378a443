"""What the client models before averaging tell: the averaging penalty, forks to a null, mixes.

Three measurements read a round's trained client models before they are averaged
(:class:`~fedjax_deep.fl.round.ClientModels`, returned by ``make_round(return_clients=True)``):

- **the averaging penalty** (:func:`make_client_evaluation`, :func:`averaging_penalty`): every
  client model evaluated on the test (and validation) set, mapped over the client axis; the
  example-weighted mean ``<split>/client_accuracy`` against the averaged model's
  ``<split>/accuracy``: ``<split>/averaging_penalty = client_accuracy - accuracy``.
- **a fork to the null** (:func:`make_null_round`, :func:`fork_divergence`): from the global model
  at the start of a round, ``K`` null clients (as many as the round's clients) train on the *whole*
  training set with the federated client program (the ``independent`` mode's: the same local
  steps, batch size, start and fresh client optimizer state), keys
  ``fold_in(round_key, FORK_TAG)``; per layer, their ``U_l`` and ``D_l`` (and CKA on the probe)
  against the FL clients' from the same start: ``fork/<layer>/<metric>_ratio = FL / null``.
- **layer mixes** (:func:`mix_masks`, :func:`make_mix_accuracies`): models that take the
  averaged weights in some layers and a client's own in the rest (a prefix of the layers from the
  input, a suffix up to the head, one layer at a time), evaluated on the test set for every
  client: which layers' averaging costs accuracy.

A *layer* is a kernel-owning module of ``FunctionalModel.layers``; every other leaf, parameter or
BatchNorm statistic, follows the layer it normalizes (:func:`leaf_layers`: ``norm_3`` follows
``conv_3`` or ``fc_3``, ``stage1_block0/norm2`` follows ``stage1_block0/conv2``, ``stem_norm``
follows ``stem``). All functions are pure and compile once per experiment: the mixes and the
null's keys are traced values, and the fork's program is the same at every fork round.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_deep.data.batching import round_batch_indices
from fedjax_deep.fl import clients
from fedjax_deep.fl.client import ClientState, make_client_update
from fedjax_deep.fl.round import ClientModels, round_client_keys
from fedjax_deep.fl.state import SimState
from fedjax_deep.metrics.divergence import cka_metrics, divergence_metrics
from fedjax_deep.metrics.evaluation import make_evaluate
from fedjax_deep.types import Metrics, PyTree

# A fork's null clients draw from fold_in(round_key, FORK_TAG): never a stream the round uses
# (clients fold in their ids below the population size, cohorts split the key).
FORK_TAG = 0x0F0C4ED


# -- the averaging penalty -----------------------------------------------------------------------
def make_client_evaluation(model, chunk_size: int = 0):
    """``evaluate_clients(client_models, splits) -> {'<split>/client_accuracy': scalar}``.

    ``client_models``: a :class:`ClientModels` (``params [C, ...]``, ``model_state [C, ...]``,
    ``weights [C]``); ``splits``: ``{'eval': batches, 'val': batches}`` as
    :func:`~fedjax_deep.metrics.batch_eval_data` makes them. Each client model is evaluated with its
    own BatchNorm statistics (mapped over the client axis, ``chunk_size`` clients at a time: 0 = one
    vmap) and the accuracies are averaged with the round's client weights.
    """
    evaluate = make_evaluate(model)

    def evaluate_clients(client_models: ClientModels, splits: dict) -> Metrics:
        out = {}
        for prefix, batches in splits.items():
            per_client = clients.map(
                lambda p, s, b=batches: evaluate(p, s, b)["eval/accuracy"],
                (client_models.params, client_models.model_state),
                chunk_size,
            )
            weights = client_models.weights.astype(per_client.dtype)
            out[f"{prefix}/client_accuracy"] = jnp.sum(weights * per_client)
        return out

    return evaluate_clients


def averaging_penalty(metrics: Metrics) -> Metrics:
    """``<split>/averaging_penalty = <split>/client_accuracy - <split>/accuracy`` for every split
    that holds both (the accuracy the average loses against its own clients; negative: it gains)."""
    out = {}
    for key in metrics:
        if key.endswith("/client_accuracy"):
            split = key.split("/", 1)[0]
            if f"{split}/accuracy" in metrics:
                out[f"{split}/averaging_penalty"] = metrics[key] - metrics[f"{split}/accuracy"]
    return out


# -- layers of a parameter tree ------------------------------------------------------------------
def _path_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def leaf_paths(tree: PyTree) -> list[str]:
    """Every leaf's path (``'conv_0/kernel'``) in ``jax.tree.leaves`` order."""
    return [_path_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def leaf_layers(paths: list[str], layers: tuple[str, ...]) -> tuple[int, ...]:
    """The layer (index into ``layers``, forward order) that owns each leaf path.

    A leaf of a layer's module belongs to it; a normalization module follows the layer it
    normalizes: ``<parent>/norm<i>`` the layer ``<parent>/conv<i>`` or ``<parent>/fc<i>`` (``i``
    with its ``_``, if any), ``<name>_norm`` the layer ``<name>``. Raises ``ValueError`` naming a
    leaf that fits no layer (a model with other names: extend the rule here).
    """
    index = {name: i for i, name in enumerate(layers)}
    out = []
    for path in paths:
        module = path.rsplit("/", 1)[0]
        parent, _, last = module.rpartition("/")
        prefix = f"{parent}/" if parent else ""
        candidates = [module]
        if last.startswith("norm"):
            candidates += [prefix + kind + last[len("norm") :] for kind in ("conv", "fc")]
        if last.endswith("_norm"):
            candidates.append(prefix + last[: -len("_norm")])
        owner = next((index[c] for c in candidates if c in index), None)
        if owner is None:
            raise ValueError(f"parameter {path!r} belongs to none of the layers {layers}")
        out.append(owner)
    return tuple(out)


# -- layer mixes ---------------------------------------------------------------------------------
def mix_masks(num_layers: int) -> tuple[list[str], np.ndarray]:
    """The mixes' names and which layers each takes from the averaged model: ``[M, L]`` bool.

    ``prefix_<k>`` (k = 0..L): layers 1..k averaged, the rest the client's (``prefix_0``: the
    client's model, ``prefix_<L>``: the averaged model); ``suffix_<k>`` (k = 1..L-1): the last k
    layers averaged; ``only_<l>`` (l = 1..L): layer l alone averaged.
    """
    layer = np.arange(num_layers)
    names, rows = [], []
    for k in range(num_layers + 1):
        names.append(f"prefix_{k}")
        rows.append(layer < k)
    for k in range(1, num_layers):
        names.append(f"suffix_{k}")
        rows.append(layer >= num_layers - k)
    for i in range(num_layers):
        names.append(f"only_{i + 1}")
        rows.append(layer == i)
    return names, np.stack(rows)


def mix_models(averaged: PyTree, client: PyTree, layer_mask: jax.Array, owners) -> PyTree:
    """``averaged``'s leaves in the layers ``layer_mask [L]`` selects, ``client``'s in the others
    (one model each; ``owners``: :func:`leaf_layers` of the tree's leaves)."""
    avg_leaves, treedef = jax.tree.flatten(averaged)
    client_leaves = jax.tree.leaves(client)
    mixed = [jnp.where(layer_mask[owner], a, c)
             for a, c, owner in zip(avg_leaves, client_leaves, owners, strict=True)]  # fmt: skip
    return jax.tree.unflatten(treedef, mixed)


def make_mix_accuracies(model, params, model_state, chunk_size: int = 0, mix_clients: int = 0):
    """``mix_accuracies(client_models, masks, batches) -> [M, K]`` test accuracies.

    Mix ``m`` of client ``k`` takes the averaged model (the example-weighted mean of *every*
    client's parameters and BatchNorm statistics, as FedAvg averages them) in the layers
    ``masks[m]`` (``[M, L]`` bool, :func:`mix_masks`) and client ``k``'s own parameters and
    statistics in the rest, for the first ``K = mix_clients`` clients (0: all ``C``; each client
    costs ``M`` evaluations of the set). Mixes run one after another (``lax.map``), clients
    ``chunk_size`` at a time. ``params`` and ``model_state`` (one model, or shapes) name the leaves.
    """
    evaluate = make_evaluate(model)
    param_owners = leaf_layers(leaf_paths(params), model.layers)
    state_owners = leaf_layers(leaf_paths(model_state), model.layers)

    def mix_accuracies(client_models: ClientModels, masks: jax.Array, batches) -> jax.Array:
        w = client_models.weights
        avg_params = clients.weighted_mean(client_models.params, w)
        avg_state = clients.weighted_mean(client_models.model_state, w)

        own = (client_models.params, client_models.model_state)
        if mix_clients:
            own = jax.tree.map(lambda x: x[:mix_clients], own)

        def one_mix(mask):
            def one_client(p, s):
                mixed_p = mix_models(avg_params, p, mask, param_owners)
                mixed_s = mix_models(avg_state, s, mask, state_owners)
                return evaluate(mixed_p, mixed_s, batches)["eval/accuracy"]

            return clients.map(one_client, own, chunk_size)

        return jax.lax.map(one_mix, masks)

    return mix_accuracies


# -- the null at a fork --------------------------------------------------------------------------
def make_null_round(
    model,
    client_optimizer: optax.GradientTransformation,
    *,
    batch_size: int,
    num_local_steps: int,
    augment=None,
    chunk_size: int = 0,
):
    """``null_round(start, data, num_examples, client_ids, key) -> ClientModels``: null clients'
    local training from the global model at the start of a round, never averaged.

    Every null client runs the federated client program (:func:`make_client_update`, as mode
    ``independent`` does): from ``start.params`` and ``start.model_state`` with a fresh client
    optimizer state (``start.client_hparams``), ``num_local_steps`` steps of ``batch_size``, batch
    indices and keys drawn as the round draws them (:func:`round_client_keys`, per client id).

    Args:
      start: the :class:`SimState` at the start of the round (only its model, statistics and
        client hyper-parameters are read).
      data: ``{'x': [N, ...], 'y': [N]}`` shared by every null client (the whole training set: it
        is never copied per client).
      num_examples: ``[K]`` the examples each client draws from (``N``, or fewer: the first
        ``n``); client_ids: ``[K]``; key: the PRNG key the clients' keys are folded from.

    Returns:
      :class:`ClientModels` of the ``K`` trained null clients, weighted by ``num_examples``.
    """
    client_update = make_client_update(model, client_optimizer, augment)

    def null_round(start: SimState, data, num_examples, client_ids, key) -> ClientModels:
        max_examples = data["y"].shape[0]
        batch_keys, train_keys = round_client_keys(key, client_ids)
        idx, mask = round_batch_indices(
            batch_keys, num_examples, max_examples, batch_size, num_local_steps
        )
        opt_state = client_optimizer.init(start.params)
        if start.client_hparams:
            opt_state = opt_state._replace(hyperparams=start.client_hparams)
        begin = ClientState(start.params, start.model_state, opt_state)

        def train(steps, train_key):
            # ``data`` is closed over, not mapped: every client gathers from the one copy.
            return client_update(begin, steps, train_key, data)[0]

        end = clients.map(train, ({"idx": idx, "mask": mask}, train_keys), chunk_size)
        weights = clients.normalized_weights(num_examples, jax.tree.leaves(start.params)[0].dtype)
        return ClientModels(end.params, end.model_state, weights)

    return null_round


def fork_divergence(
    start_params,
    fl: ClientModels,
    null: ClientModels,
    layers: tuple[str, ...],
    fl_reps: dict | None = None,
    null_reps: dict | None = None,
) -> Metrics:
    """Per layer, the FL clients' and the null clients' divergence from one start, and FL / null.

    ``start_params``: the global model both started from; ``fl``, ``null``: their trained
    :class:`ClientModels`; ``layers``: ``FunctionalModel.layers``; ``fl_reps``/``null_reps``:
    optional ``{name: [C, P, ...]}`` representations on the CKA probe.

    Returns ``fork/<layer>/{fl,null}_{update,relative}`` (``U_l``, ``D_l`` of the layer's kernel),
    ``fork/<layer>/{update,relative}_ratio`` (FL / null; NaN where the null's is 0), the same under
    ``fork/mean/`` (means over layers; the ratio of the means), and with representations
    ``fork/<name>/{fl,null}_cka`` and ``cka_ratio``.
    """
    fl_div = divergence_metrics(fl.params, start_params, fl.weights, layers)
    null_div = divergence_metrics(null.params, start_params, null.weights, layers)
    out: Metrics = {}
    metrics = ("update", "relative")
    for layer in (*layers, "mean"):
        leaf = "mean" if layer == "mean" else f"{layer}/kernel"
        for m in metrics:
            a, b = fl_div[f"divergence/{leaf}/{m}"], null_div[f"divergence/{leaf}/{m}"]
            out.update(_ratio(f"fork/{layer}", m, a, b))
    if fl_reps is not None and null_reps is not None:
        fl_cka = cka_metrics(fl_reps, fl.weights)
        null_cka = cka_metrics(null_reps, null.weights)
        for key, a in fl_cka.items():
            name = key.split("/", 1)[1].rsplit("/", 1)[0]
            out.update(_ratio(f"fork/{name}", "cka", a, null_cka[key]))
    return out


def _ratio(prefix: str, metric: str, fl_value, null_value) -> Metrics:
    ratio = jnp.where(null_value > 0, fl_value / jnp.where(null_value > 0, null_value, 1.0),
                      jnp.nan)  # fmt: skip
    return {f"{prefix}/fl_{metric}": fl_value, f"{prefix}/null_{metric}": null_value,
            f"{prefix}/{metric}_ratio": ratio}  # fmt: skip


def fork_start(state: SimState) -> SimState:
    """What a fork reads of the state at the start of its round, copied (the round donates the
    state): the global model, its statistics and the client hyper-parameters; no per-client rows.
    Works on a member axis too (``[R, ...]`` leaves)."""
    keep = (state.params, state.model_state, state.round, state.client_hparams)
    params, model_state, round_, hparams = jax.tree.map(jnp.copy, keep)
    return SimState(params, model_state, {}, round_, {}, hparams)


# -- the fork program ----------------------------------------------------------------------------
def make_fork(
    model,
    client_optimizer: optax.GradientTransformation,
    params,
    model_state,
    *,
    batch_size: int,
    num_local_steps: int,
    augment=None,
    chunk_size: int = 0,
    cka_probe: jax.Array | None = None,
    mix_clients: int = 0,
):
    """``fork_fn(start, fl, train_data, round_key, test_batches) -> metrics``: one fork.

    From ``start`` (the :class:`SimState` at the start of the forked round), the round's trained
    FL clients ``fl`` (:class:`ClientModels`, ``C`` of them) against ``C`` null clients trained on
    ``train_data`` (``{'x': [N, ...], 'y': [N]}``, the whole training set) with keys folded from
    ``fold_in(round_key, FORK_TAG)``: :func:`fork_divergence`'s ``fork/<layer>/...`` and every
    layer mix's test accuracy, ``fork/mix/<mix>/accuracy`` (:func:`mix_masks`), the weighted
    mean over the first ``mix_clients`` clients (0: all). One program for every fork of a run (its inputs' shapes never change).
    """
    null_round = make_null_round(
        model, client_optimizer, batch_size=batch_size, num_local_steps=num_local_steps,
        augment=augment, chunk_size=chunk_size,
    )  # fmt: skip
    mix_accuracies = make_mix_accuracies(model, params, model_state, chunk_size, mix_clients)
    names, masks = mix_masks(len(model.layers))

    def representations(models: ClientModels):
        return clients.map(
            lambda p, s: model.representations(p, s, cka_probe),
            (models.params, models.model_state),
            chunk_size,
        )

    def fork_fn(start: SimState, fl: ClientModels, train_data, round_key, test_batches) -> Metrics:
        k = fl.weights.shape[0]
        n = train_data["y"].shape[0]
        null = null_round(
            start,
            train_data,
            jnp.full((k,), n, jnp.int32),
            jnp.arange(k, dtype=jnp.int32),
            jax.random.fold_in(round_key, FORK_TAG),
        )
        reps = (None, None)
        if cka_probe is not None:
            reps = (representations(fl), representations(null))
        out = fork_divergence(start.params, fl, null, model.layers, *reps)
        accuracy = mix_accuracies(fl, jnp.asarray(masks), test_batches)  # [M, K]
        weights = fl.weights[: accuracy.shape[1]].astype(accuracy.dtype)
        per_mix = accuracy @ (weights / jnp.sum(weights))
        out.update({f"fork/mix/{name}/accuracy": per_mix[i] for i, name in enumerate(names)})
        return out

    return fork_fn
