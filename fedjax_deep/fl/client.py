"""Local training of one client: a pure function, local steps in ``lax.scan``.

:func:`make_client_update` returns ``client_update(state, batches, key, data=None)``, written for
one client; ``jax.vmap`` it over a leading client axis to train every client at once (the round
does exactly that). Other studies can import it and call it on their own stacked state.

A step whose batch is only padding (``mask`` all False) changes nothing: parameters, optimizer
state (momentum, weight decay) and BatchNorm statistics are kept, so clients with fewer examples
are padded to a common number of steps without being trained differently.

A client may also be given a step budget (heterogeneous local work, :mod:`fedjax_deep.fl.
heterogeneity`): it then takes only its first ``budget`` real steps and keeps its state through the
rest of the scan, which still runs ``S`` steps (``S`` is static: shapes never change).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from fedjax_deep.losses import Loss, get_loss, masked_loss
from fedjax_deep.types import Batch, Metrics, ModelState, Params, PyTree


@struct.dataclass
class ClientState:
    """What a client carries through its local steps (add a leading C axis to stack clients).

    Attributes:
      params: model parameters.
      model_state: BatchNorm statistics (``{}`` for models without BatchNorm).
      opt_state: the client optimizer's optax state.
    """

    params: Params
    model_state: ModelState
    opt_state: optax.OptState


def make_loss_fn(model, loss: Loss | None = None):
    """``loss_fn(params, model_state, batch) -> (loss, (new_model_state, num, metric_sums))``:
    the mean of ``loss`` (a :data:`fedjax_deep.losses.Loss`; default softmax cross entropy) over
    the batch's real examples, their count and the sum of each metric the loss reports."""
    loss = get_loss(loss)

    def loss_fn(params, model_state, batch: Batch):
        outputs, new_model_state = model.apply(
            params, model_state, batch["x"], train=True, mask=batch["mask"]
        )
        mean, num, sums = masked_loss(loss, outputs, batch)
        return mean, (new_model_state, num, sums)

    return loss_fn


def _gather(data: PyTree, step_inputs: Batch) -> Batch:
    """A step's batch: every array of ``data`` (``'x'``, ``'y'`` and any other per-example key)
    at the step's indices, and its mask."""
    batch = {k: v[step_inputs["idx"]] for k, v in data.items()}
    return {**batch, "mask": step_inputs["mask"]}


def make_client_update(
    model,
    client_optimizer: optax.GradientTransformation,
    augment=None,
    grad_hook=None,
    loss_fn: Loss | None = None,
):
    """Builds the pure local-training function of one client.

    Args:
      model: a :class:`fedjax_deep.models.FunctionalModel` (anything with the same ``apply``).
      client_optimizer: an optax transformation, e.g. ``optax.chain(optax.add_decayed_weights(wd),
        optax.sgd(lr, momentum))``.
      augment: optional ``(key, x [B, ...]) -> x`` applied to every local batch with a key split
        from the client's ``key`` (``fedjax_deep.data.augment``).
      grad_hook: optional ``(grads, params, ctx) -> grads`` applied to every local step's gradients
        before the optimizer (an algorithm's proximal term or drift correction); ``ctx`` is the
        ``ctx`` argument of ``client_update``.
      loss_fn: a :data:`fedjax_deep.losses.Loss` ``(outputs, batch) -> (loss [B], {metric: [B]})``
        (default: softmax cross entropy, reporting ``accuracy``); the mask is applied here.

    Returns:
      ``client_update(state, batches, key, data=None, ctx=None, budget=None) -> (state, metrics)``
      where

      - ``state``: a :class:`ClientState` of one client;
      - ``batches``: ``{'x': [S, B, ...], 'y': [S, B], 'mask': [S, B]}``, one batch per local step;
        or, when ``data`` is given, ``{'idx': [S, B], 'mask': [S, B]}``: indices into ``data``;
      - ``key``: a PRNG key for this client's local training (augmentation draws from it);
      - ``data``: optional ``{'x': [N, ...], 'y': [N]}``, the client's device-resident examples,
        gathered per step so that ``[S, B, ...]`` batches are never materialized;
      - ``budget``: optional int32 scalar, the most real steps this client takes this round (0:
        none, as a dropped client); None: all of them;
      - ``metrics``: ``loss`` and every metric of the loss (``accuracy`` for the default; means
        over real examples seen), ``num_examples`` and ``num_steps`` (real steps taken), all
        scalars.
    """
    loss_fn = make_loss_fn(model, loss_fn)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def local_step(state: ClientState, batch: Batch, ctx, allowed) -> tuple[ClientState, tuple]:
        (loss, (model_state, num, sums)), grads = grad_fn(state.params, state.model_state, batch)
        if grad_hook is not None:
            grads = grad_hook(grads, state.params, ctx)
        updates, opt_state = client_optimizer.update(grads, state.opt_state, state.params)
        new_state = ClientState(optax.apply_updates(state.params, updates), model_state, opt_state)
        # A padding step, or one past the budget: parameters, optimizer state and statistics kept.
        taken = (num > 0) & allowed
        new_state = jax.tree.map(lambda n, o: jnp.where(taken, n, o), new_state, state)
        num = jnp.where(taken, num, 0)
        sums = {name: jnp.where(taken, s, 0) for name, s in sums.items()}
        return new_state, (jnp.where(taken, loss * num, 0.0), num, sums)

    def client_update(
        state: ClientState, batches: Batch, key: jax.Array, data=None, ctx=None, budget=None
    ):
        num_steps = jax.tree.leaves(batches)[0].shape[0]

        if budget is None:
            allowed = jnp.ones((num_steps,), bool)
        else:
            # Step s is allowed while fewer than ``budget`` real steps came before it; computed from
            # the masks up front, so the scan carries nothing new (a carried count would have to vary
            # over a sharded client axis like the data it counts).
            real = jnp.any(batches["mask"].reshape(num_steps, -1), axis=1).astype(jnp.int32)
            allowed = jnp.cumsum(real) - real < budget

        def step(state, inputs):
            step_inputs, step_key, step_allowed = inputs
            batch = step_inputs if data is None else _gather(data, step_inputs)
            if augment is not None:
                batch = {**batch, "x": augment(step_key, batch["x"])}
            return local_step(state, batch, ctx, step_allowed)

        step_keys = jax.random.split(key, num_steps)
        state = _varying_like(state, (state, batches, step_keys, allowed, data, ctx))
        state, (loss_sum, num, sums) = jax.lax.scan(step, state, (batches, step_keys, allowed))
        total = jnp.sum(num)
        denom = jnp.maximum(total, 1.0)
        metrics: Metrics = {
            "loss": jnp.sum(loss_sum) / denom,
            **{name: jnp.sum(s) / denom for name, s in sums.items()},
            "num_examples": total,
            "num_steps": jnp.sum(num > 0, dtype=jnp.int32),
        }
        return state, metrics

    return client_update


def make_client_grad(model, loss_fn: Loss | None = None):
    """``client_grad(params, model_state, batch) -> grads``: one client's gradient of the loss
    (``loss_fn``, default softmax cross entropy) at ``params`` on ``batch`` (train mode). The round
    vmaps it at the shared global model to measure gradient divergence."""
    loss_fn = make_loss_fn(model, loss_fn)

    def client_grad(params, model_state, batch: Batch):
        grads = jax.grad(lambda p: loss_fn(p, model_state, batch)[0])(params)
        # An empty batch (a padding client) has zero gradient, not BatchNorm's 0/0.
        has_data = jnp.any(batch["mask"])
        return jax.tree.map(lambda g: jnp.where(has_data, g, 0.0), grads)

    return client_grad


def _vma(x) -> frozenset:
    """The mesh axes a traced value varies over inside ``shard_map`` (empty outside it): the
    aval's ``manual_axis_type.varying`` (jax >= 0.9), or its ``vma`` (earlier releases)."""
    aval = jax.typeof(x)
    manual = getattr(aval, "manual_axis_type", None)
    if manual is not None:
        return frozenset(manual.varying)
    return frozenset(getattr(aval, "vma", None) or ())


def _varying_like(carry, inputs):
    """``carry`` with each leaf cast to vary over every mesh axis that any leaf of ``inputs``
    varies over. Inside ``shard_map`` over a sharded client axis, a leaf made fresh for each
    client (an optimizer's step count, initialized from a constant) is replicated, while the
    step that updates it varies over the clients: ``lax.scan`` needs its carry's input and output
    types equal. Outside ``shard_map`` (vmap, chunks) every set is empty and nothing changes."""
    axes = frozenset().union(*(_vma(x) for x in jax.tree.leaves(inputs)))
    if not axes:
        return carry

    def cast(x):
        missing = tuple(sorted(axes - _vma(x)))
        return jax.lax.pcast(x, missing, to="varying") if missing else x

    return jax.tree.map(cast, carry)
