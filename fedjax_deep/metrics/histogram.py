"""The paper authors' divergence view: per convolution layer, a histogram of every client's
weights minus the clients' mean (kxzxvbk/FL_framework, commit aef1b67, ``utils/compressor.py``
``check_space_avg``: ``add_histogram('div_' + key, stack(W) - mean(W))`` for every 4-D weight).

Counts on fixed bin edges, so that rounds, runs and layers compare bin by bin and the result can
be logged or plotted; pure and jittable, a reduction over the client axis like
:mod:`fedjax_deep.metrics.divergence`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_deep.fl import clients
from fedjax_deep.types import ClientParams


def symmetric_edges(max_abs: float, num_bins: int = 41) -> np.ndarray:
    """``num_bins + 1`` evenly spaced edges on ``[-max_abs, max_abs]``; with an odd ``num_bins``
    the middle bin is centred on 0."""
    if not max_abs > 0 or num_bins < 1:
        raise ValueError(f"need max_abs > 0 and num_bins >= 1, got {max_abs}, {num_bins}")
    return np.linspace(-max_abs, max_abs, num_bins + 1)


def conv_kernel_paths(params, *, min_ndim: int = 3) -> list[tuple[str, ...]]:
    """Paths of the convolution kernels of one model's ``params``: leaves named ``kernel`` with at
    least ``min_ndim`` dimensions (a 1-D convolution's ``[k, cin, cout]``, a 2-D one's
    ``[kh, kw, cin, cout]``; dense kernels are 2-D). ``min_ndim=2`` adds the dense layers."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = tuple(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        if keys[-1] == "kernel" and len(np.shape(leaf)) >= min_ndim:
            out.append(keys)
    return out


def _leaf(tree, path: tuple[str, ...]):
    for k in path:
        tree = tree[k]
    return tree


def deviation_histograms(
    client_params: ClientParams,
    edges: jax.Array,
    paths: list[tuple[str, ...]],
    weights: jax.Array | None = None,
    axis_name: str | None = None,
) -> dict[str, jax.Array]:
    """Per layer, counts of ``W[k] - Wbar`` over every client ``k`` and every weight.

    Args:
      client_params: nested dicts of ``[C, ...]`` leaves.
      edges: ``[E + 1]`` increasing bin edges.
      paths: the layers (``conv_kernel_paths`` of one client's params).
      weights: ``[C]`` normalized client weights for the mean ``Wbar``; None: the plain mean (the
        authors' view).
      axis_name: the client axis' name when clients are sharded (counts and mean summed over it).

    Returns:
      ``{'a/b/kernel': counts [E + 2] int32}``: bin 0 counts values below ``edges[0]``, bin
      ``i`` in ``1..E`` counts ``[edges[i-1], edges[i])``, bin ``E + 1`` values from ``edges[-1]``
      on; the counts of a layer sum to ``C x`` its weights per client.
    """
    edges = jnp.asarray(edges)
    out = {}
    for path in paths:
        w = _leaf(client_params, path)
        if weights is None:
            mean = clients.mean(w, axis_name)
        else:
            mean = clients.weighted_mean(w, weights, axis_name)
        dev = w - mean[None]
        idx = jnp.searchsorted(edges, dev.reshape(w.shape[0], -1), side="right")
        per_client = jax.vmap(lambda i: jnp.bincount(i, length=edges.shape[0] + 1))(idx)
        out["/".join(path)] = clients.sum(per_client.astype(jnp.int32), axis_name)
    return out
