"""The loss every client trains on and every evaluation reports, and the registry of losses.

A loss is a pure function of one batch, written per example; the library applies the mask:

    loss_fn(outputs, batch) -> (per_example_loss [B], {metric: per_example_value [B]})

``outputs`` is what the model returns for ``batch['x']`` (logits ``[B, K]`` for the built-in
classifiers); ``batch`` is the local batch dict (``'x'``, ``'y'``, ``'mask'``, ...). Padding rows
(``mask`` False) may hold anything (zeros, NaN): :func:`masked_loss` keeps them out with ``where``.
Clients train on the mean loss over real examples; the round reports every metric the loss returns
as ``train/<metric>``, the evaluation as ``eval/<metric>`` and ``val/<metric>`` (means over real
examples). Accuracy is one metric a loss may report, not an assumption.

:data:`LOSSES` maps a name (``config.loss.name``) to a loss; :func:`register_loss` adds one (the
config reads the table when it validates, so a loss registered after import is a valid choice).
Its own module, below both the round (:mod:`fedjax_deep.fl.client`) and the evaluation
(:mod:`fedjax_deep.metrics.evaluation`), so neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from fedjax_deep.errors import FieldError
from fedjax_deep.types import Batch, PyTree

Loss = Callable[[PyTree, Batch], tuple[jax.Array, dict[str, jax.Array]]]
# Keys of a client's metrics that a loss's metric may not take.
RESERVED_METRICS = ("loss", "num_examples", "num_steps")


def softmax_cross_entropy(logits: jax.Array, batch: Batch):
    """Cross entropy over integer labels, and whether the arg-max is the label.

    Args:
      logits: ``[B, K]``; ``batch['y']``: ``[B]`` int in ``[0, K)``.

    Returns:
      ``(loss [B], {'accuracy': [B]})``, both in the logits' dtype.
    """
    labels = batch["y"]
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, -1) == labels).astype(logits.dtype)
    return per_example, {"accuracy": correct}


def mean_squared_error(outputs: jax.Array, batch: Batch):
    """Regression: ``(outputs [B, ...] - y [B, ...])**2`` summed over the trailing axes (``y`` of
    shape ``[B]`` is compared with ``outputs [B, 1]``); reports ``mse`` (the same value)."""
    y = batch["y"].astype(outputs.dtype).reshape(outputs.shape)
    per_example = jnp.sum(jnp.square(outputs - y).reshape(len(y), -1), -1)
    return per_example, {"mse": per_example}


def sigmoid_binary_cross_entropy(logits: jax.Array, batch: Batch):
    """Multi-label: ``logits [B, K]`` against 0/1 targets ``y [B, K]``, summed over labels;
    reports ``label_accuracy`` (the share of labels whose sign is right)."""
    y = batch["y"].astype(logits.dtype)
    per_example = jnp.sum(optax.sigmoid_binary_cross_entropy(logits, y), -1)
    right = jnp.mean(((logits > 0) == (y > 0.5)).astype(logits.dtype), -1)
    return per_example, {"label_accuracy": right}


LOSSES: dict[str, Loss] = {
    "softmax_cross_entropy": softmax_cross_entropy,
    "mean_squared_error": mean_squared_error,
    "sigmoid_binary_cross_entropy": sigmoid_binary_cross_entropy,
}
DEFAULT_LOSS = "softmax_cross_entropy"


def register_loss(name: str, fn: Loss) -> Loss:
    """Adds ``fn`` to :data:`LOSSES` under ``name`` (``config.loss.name`` may then name it);
    returns ``fn`` so it can decorate: ``@functools.partial(register_loss, 'mine')``."""
    if not callable(fn):
        raise TypeError(f"register_loss({name!r}, ...) needs a function (outputs, batch) -> ...")
    LOSSES[name] = fn
    return fn


def get_loss(loss: str | Loss | None) -> Loss:
    """A loss by name (``None``: the default, softmax cross entropy), or the function itself."""
    if loss is None:
        return LOSSES[DEFAULT_LOSS]
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise FieldError("loss.name", loss, f"unknown loss; use one of {', '.join(LOSSES)}")
    return LOSSES[loss]


def masked_loss(loss_fn: Loss, outputs: PyTree, batch: Batch):
    """The mean loss over the batch's real examples, their count and each metric's sum.

    Args:
      loss_fn: a :data:`Loss`.
      outputs: the model's outputs on ``batch['x']``.
      batch: ``{'x': [B, ...], 'y': [B, ...], 'mask': [B], ...}``.

    Returns:
      ``(mean_loss, num_real, {metric: sum over real examples})``, scalars in the loss's dtype;
      the mean is 0 when the batch is all padding.
    """
    per_example, metrics = loss_fn(outputs, batch)
    mask = batch["mask"]
    _check_per_example("loss", per_example, mask)
    for name, value in metrics.items():
        if name in RESERVED_METRICS:
            raise FieldError("loss.name", name, f"a loss's metric may not be named "
                             f"{', '.join(RESERVED_METRICS)}; rename it")  # fmt: skip
        _check_per_example(f"metric {name!r}", value, mask)
    # where, not multiply: padding may carry NaN (BatchNorm over an all-padding batch is 0/0).
    num = jnp.sum(mask.astype(per_example.dtype))
    loss = jnp.sum(jnp.where(mask, per_example, 0.0)) / jnp.maximum(num, 1.0)
    sums = {name: jnp.sum(jnp.where(mask, v, 0)).astype(per_example.dtype)
            for name, v in metrics.items()}  # fmt: skip
    return loss, num, sums


def _check_per_example(what: str, value, mask) -> None:
    """Shapes are static: a loss returning the wrong shape fails at trace time, in one line."""
    shape = getattr(value, "shape", None)
    if shape != mask.shape:
        raise FieldError(
            "loss.name", what,
            f"the loss returned shape {shape} where one value per example {tuple(mask.shape)} "
            "is needed; return per-example values (no mean), the library applies the mask",
        )  # fmt: skip


def masked_cross_entropy(logits: jax.Array, labels: jax.Array, mask: jax.Array):
    """Mean cross entropy over real examples and their count (:func:`masked_loss` of
    :func:`softmax_cross_entropy`, kept for callers of the old three-value form).

    Args:
      logits: ``[B, K]``; labels: ``[B]`` int; mask: ``[B]`` bool.

    Returns:
      ``(mean_loss, num_real, num_correct)``, scalars; mean is 0 when the batch is all padding.
    """
    loss, num, sums = masked_loss(softmax_cross_entropy, logits, {"y": labels, "mask": mask})
    return loss, num, sums["accuracy"]


def next_token_cross_entropy(logits: jax.Array, batch: Batch):
    """Next-token prediction: cross entropy at every position, averaged over the positions.

    Args:
      logits: ``[B, T, V]``; ``batch['y']``: ``[B, T]`` int, the next token at every position.

    Returns:
      ``(loss [B], {'accuracy': [B]})``: each sequence's mean token cross entropy and its share of
      positions whose arg-max is the next token (every position counts: no token padding).
    """
    labels = batch["y"]
    per_token = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, -1) == labels).astype(logits.dtype)
    return jnp.mean(per_token, -1), {"accuracy": jnp.mean(correct, -1)}


register_loss("next_token_cross_entropy", next_token_cross_entropy)
