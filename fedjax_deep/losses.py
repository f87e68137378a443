"""The loss every client trains on and every evaluation reports: masked cross entropy.

Its own module, below both the round (:mod:`fedjax_deep.fl.client`) and the evaluation
(:mod:`fedjax_deep.metrics.evaluation`), so neither imports the other for it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def masked_cross_entropy(logits: jax.Array, labels: jax.Array, mask: jax.Array):
    """Mean cross entropy over real examples and their count.

    Args:
      logits: ``[B, K]``; labels: ``[B]`` int; mask: ``[B]`` bool.

    Returns:
      ``(mean_loss, num_real, num_correct)``, scalars; mean is 0 when the batch is all padding.
    """
    # where, not multiply: padding may carry NaN (BatchNorm over an all-padding batch is 0/0).
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    num = jnp.sum(mask.astype(logits.dtype))
    loss = jnp.sum(jnp.where(mask, per_example, 0.0)) / jnp.maximum(num, 1.0)
    correct = jnp.sum(mask & (jnp.argmax(logits, -1) == labels)).astype(logits.dtype)
    return loss, num, correct
