"""Divergence between client models: reductions over the client axis, per layer (../shared/SPEC.md).

For one parameter leaf with clients ``W[k]`` (``[C, ...]``), normalized weights ``p`` (``[C]``) and the
global model ``g`` at the start of the round, with ``Wbar = sum_k p_k W[k]`` and ``d[k] = W[k] - g``:

- ``relative`` (headline):  ``sum_k p_k ||W[k] - Wbar||^2 / ||Wbar||^2``
- ``update`` (in [0, 1]):   ``sum_k p_k ||d[k] - dbar||^2 / sum_k p_k ||d[k]||^2``
- ``cosine``: mean pairwise cosine of the updates ``d[k]``, pairs ``k != j`` weighted by ``p_k p_j``
  (the plain mean for equal weights); computed in O(C) as
  ``(||sum_k p_k u[k]||^2 - sum_k p_k^2 ||u[k]||^2) / (1 - sum_k p_k^2)`` with ``u = d / ||d||``.
  Undefined (NaN) for a single client.
- ``grad``: ``update``'s formula applied to each client's gradient at the shared global model.
- ``cka`` (a similarity, in [0, 1]; 1 = the same representation up to rotation and scale): the
  weighted mean pairwise linear CKA (Kornblith et al., 2019) between client models' activations of
  one layer on a fixed probe batch; with ``K[k] = Xc[k] Xc[k]^T`` (``Xc`` the activations centred
  over the probe examples), CKA is the cosine between ``K[k]`` and ``K[j]``, so it is ``cosine``'s
  formula over the clients' centred Gram matrices. Keys ``divergence/<layer>/cka``
  (``FunctionalModel.representations`` names the layers); the ``mean`` leaves out the head.

A zero denominator (identical clients that did not move) gives 0. A *layer* is one module's kernel;
``mean/<metric>`` averages the layers' values (depth-normalized aggregate); biases and normalization
parameters get per-leaf entries but never enter the ``mean``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_deep.fl import clients
from fedjax_deep.types import ClientParams, Metrics, Params

METRICS = ("relative", "update", "cosine", "grad")


def _safe_div(num, den):
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def _sqnorm(x: jax.Array) -> jax.Array:
    """Squared norm of each client's slice: ``[C, ...]`` -> ``[C]``."""
    return jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=1)


def _dispersion(x: jax.Array, p: jax.Array, axis_name=None) -> tuple[jax.Array, jax.Array]:
    """``sum_k p_k ||x[k] - xbar||^2`` and ``xbar``."""
    xbar = clients.weighted_mean(x, p, axis_name)
    return clients.sum(p * _sqnorm(x - xbar[None]), axis_name), xbar


def relative_dispersion(client_w: jax.Array, p: jax.Array, axis_name=None) -> jax.Array:
    """``D``: ``client_w [C, ...]``, ``p [C]`` -> scalar."""
    disp, wbar = _dispersion(client_w, p, axis_name)
    return _safe_div(disp, jnp.sum(jnp.square(wbar)))


def update_dispersion(client_d: jax.Array, p: jax.Array, axis_name=None) -> jax.Array:
    """``U``: ``client_d [C, ...]`` (updates or gradients), ``p [C]`` -> scalar in [0, 1]."""
    disp, _ = _dispersion(client_d, p, axis_name)
    return _safe_div(disp, clients.sum(p * _sqnorm(client_d), axis_name))


def mean_pairwise_cosine(client_d: jax.Array, p: jax.Array, axis_name=None) -> jax.Array:
    """Weighted mean cosine over pairs ``k != j``: ``client_d [C, ...]``, ``p [C]`` -> scalar."""
    norms = jnp.sqrt(_sqnorm(client_d))
    shape = (-1,) + (1,) * (client_d.ndim - 1)
    unit = client_d / jnp.where(norms > 0, norms, 1.0).reshape(shape)
    unit_sq = (norms > 0).astype(p.dtype)
    mean_unit = clients.weighted_mean(unit, p, axis_name)
    pair_weight = 1.0 - clients.sum(p * p, axis_name)
    self_terms = clients.sum(jnp.square(p) * unit_sq, axis_name)
    return (jnp.sum(jnp.square(mean_unit)) - self_terms) / pair_weight


def _path_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def divergence_metrics(
    client_params: ClientParams,
    server_params: Params,
    weights: jax.Array,
    layers: tuple[str, ...],
    client_grads: ClientParams | None = None,
    axis_name: str | None = None,
) -> Metrics:
    """All divergence metrics of one round, as a flat dict of scalars.

    Args:
      client_params: ``[C, ...]`` after local training, before averaging.
      server_params: the global model at the start of the round.
      weights: ``[C]``, normalized client weights.
      layers: module names whose ``kernel`` is a layer (forward order); see ``FunctionalModel``.
      client_grads: optional ``[C, ...]`` gradients at ``server_params`` (for ``grad``).
      axis_name: the client axis's name when it is sharded (inside ``shard_map``).

    Returns:
      ``{'divergence/<leaf path>/<metric>': scalar, 'divergence/mean/<metric>': scalar}``.
    """
    out: Metrics = {}
    flat_w = jax.tree_util.tree_flatten_with_path(client_params)[0]
    flat_g = jax.tree.leaves(server_params)
    flat_grad = jax.tree.leaves(client_grads) if client_grads is not None else [None] * len(flat_g)
    kernel_paths = {f"{name}/kernel" for name in layers}
    per_metric = {m: [] for m in METRICS}
    for (path, w), g, grad in zip(flat_w, flat_g, flat_grad, strict=True):
        name = _path_name(path)
        p = weights.astype(w.dtype)
        d = w - g[None]
        values = {
            "relative": relative_dispersion(w, p, axis_name),
            "update": update_dispersion(d, p, axis_name),
            "cosine": mean_pairwise_cosine(d, p, axis_name),
        }
        if grad is not None:
            values["grad"] = update_dispersion(grad, p, axis_name)
        for metric, value in values.items():
            out[f"divergence/{name}/{metric}"] = value
            if name in kernel_paths:
                per_metric[metric].append(value)
    for metric, values in per_metric.items():
        if values:
            out[f"divergence/mean/{metric}"] = jnp.mean(jnp.stack(values))
    return out


def centered_gram(x: jax.Array) -> jax.Array:
    """``x [B, ...]`` (one model's activations) -> ``Xc Xc^T [B, B]``, ``Xc`` centred over ``B``."""
    flat = x.reshape(x.shape[0], -1)
    flat = flat - jnp.mean(flat, axis=0, keepdims=True)
    return flat @ flat.T


def linear_cka(x: jax.Array, y: jax.Array) -> jax.Array:
    """Linear CKA of two models' activations on the same ``B`` examples (``[B, ...]`` each):
    ``<Kx, Ky>_F / (||Kx||_F ||Ky||_F)`` with centred Gram matrices; 0 when one is constant."""
    kx, ky = centered_gram(x), centered_gram(y)
    den = jnp.sqrt(jnp.sum(kx * kx) * jnp.sum(ky * ky))
    return _safe_div(jnp.sum(kx * ky), den)


def cka_metrics(
    client_representations: dict[str, jax.Array], weights: jax.Array, axis_name: str | None = None
) -> Metrics:
    """Mean pairwise linear CKA between client models, per layer.

    Args:
      client_representations: ``{layer: [C, B, ...]}``, every client's activations on the same
        probe batch (``FunctionalModel.representations`` under the client map).
      weights: ``[C]``, normalized client weights (pairs weighted by ``p_k p_j``).
      axis_name: the client axis's name when it is sharded.

    Returns:
      ``{'divergence/<layer>/cka': scalar, 'divergence/mean/cka': mean over layers but the head}``.
    """
    out: Metrics = {}
    body = []
    for name, reps in client_representations.items():
        grams = jax.vmap(centered_gram)(reps.astype(jnp.float32))
        value = mean_pairwise_cosine(grams, weights.astype(jnp.float32), axis_name)
        out[f"divergence/{name}/cka"] = value
        if name != "head":
            body.append(value)
    if body:
        out["divergence/mean/cka"] = jnp.mean(jnp.stack(body))
    return out
