"""Evaluation of one (global) model on a held-out set, in fixed-shape padded batches.

:func:`batch_eval_data` pads and reshapes the set once (``[nb, Be, ...]`` plus a mask) and puts it on
the device; :func:`make_evaluate` returns a pure function that scans over those batches, so the
evaluation compiles once.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_deep.losses import Loss, get_loss, masked_loss


def batch_eval_data(x: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, jax.Array]:
    """``x [N, ...]``, ``y [N, ...]`` -> ``{'x': [nb, Be, ...], 'y': [nb, Be, ...],
    'mask': [nb, Be]}``."""
    n = len(y)
    batch_size = min(batch_size, n)
    nb = math.ceil(n / batch_size)
    pad = nb * batch_size - n
    xp = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    yp = np.concatenate([y, np.zeros((pad, *y.shape[1:]), y.dtype)])
    mask = np.arange(nb * batch_size) < n
    return {
        "x": jnp.asarray(xp.reshape(nb, batch_size, *x.shape[1:])),
        "y": jnp.asarray(yp.reshape(nb, batch_size, *y.shape[1:])),
        "mask": jnp.asarray(mask.reshape(nb, batch_size)),
    }


def make_evaluate(model, loss_fn: Loss | None = None):
    """``evaluate(params, model_state, batches) -> {'eval/loss', 'eval/<metric>', ...}``: the mean
    loss and the mean of every metric ``loss_fn`` reports (a :data:`fedjax_deep.losses.Loss`;
    default softmax cross entropy, whose metric is ``accuracy``) over the real examples, in eval
    mode (BatchNorm uses ``model_state``'s running statistics)."""
    loss_fn = get_loss(loss_fn)

    def evaluate(params, model_state, batches):
        def one(carry, batch):
            outputs, _ = model.apply(params, model_state, batch["x"], train=False)
            loss, num, sums = masked_loss(loss_fn, outputs, batch)
            return carry, (loss * num, num, sums)

        _, (loss_sum, num, sums) = jax.lax.scan(one, None, batches)
        total = jnp.sum(num)
        out = {"eval/loss": jnp.sum(loss_sum) / total}
        out.update({f"eval/{name}": jnp.sum(s) / total for name, s in sums.items()})
        return out

    return evaluate
