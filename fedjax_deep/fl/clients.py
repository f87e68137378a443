"""The client-axis vocabulary: every operation over the leading client axis ``C``, in one place.

DrJAX's five words (``broadcast``, ``map``, ``sum``, ``mean``, ``weighted_mean``), plus the client
weights they take. Each reduction names the client axis explicitly with ``axis_name``: ``None``
when every client is on this device, the mesh axis (``'clients'``) inside ``shard_map``, where the
sum runs over this device's clients and then ``psum``s across devices. ``map`` runs on each
device's own clients and needs no axis name.

Read as ``clients.sum(x, axis_name)`` after ``from fedjax_deep.fl import clients`` (``map`` and
``sum`` shadow the builtins on purpose, inside this module only). It imports nothing of the package
but its type aliases, so the metrics and the algorithms use it without importing the round.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_deep.types import PyTree


def _psum(x: jax.Array, axis_name: str | None) -> jax.Array:
    return jax.lax.psum(x, axis_name) if axis_name else x


def broadcast(tree: PyTree, num_clients: int, axis_name: str | None = None) -> PyTree:
    """One value for every client: ``[...]`` -> ``[C, ...]``. Inside ``shard_map`` the copies are
    marked as varying over ``axis_name`` (each device's clients go on to differ)."""
    out = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_clients, *x.shape)), tree)
    return varying(out, axis_name)


def varying(tree: PyTree, axis_name: str | None) -> PyTree:
    """``tree`` (replicated) marked as varying over the sharded client axis, so that values each
    client computes from it can differ per device (a no-op without an axis name)."""
    if not axis_name:
        return tree
    return jax.tree.map(lambda x: jax.lax.pcast(x, axis_name, to="varying"), tree)


def map(fn, args: tuple, chunk_size: int = 0):
    """``fn`` over the leading client axis of every leaf of ``args``: ``[C, ...]`` -> ``[C, ...]``.

    ``chunk_size`` 0 vmaps every client at once; ``k >= 1`` runs ``lax.map`` over chunks of ``k``
    vmapped clients (``1``: one client after another), which bounds memory.
    """
    num = jax.tree.leaves(args)[0].shape[0]
    if chunk_size == 0 or chunk_size >= num:
        return jax.vmap(fn)(*args)
    if chunk_size == 1:
        return jax.lax.map(lambda a: fn(*a), args)
    return jax.lax.map(lambda a: fn(*a), args, batch_size=chunk_size)


def sum(tree: PyTree, axis_name: str | None = None) -> PyTree:
    """Sum over clients, leaf by leaf: ``[C, ...]`` -> ``[...]``."""
    return jax.tree.map(lambda x: _psum(jnp.sum(x, axis=0), axis_name), tree)


def mean(tree: PyTree, axis_name: str | None = None) -> PyTree:
    """Plain mean over clients (every client counts once): ``[C, ...]`` -> ``[...]``."""

    def one(x):
        count = _psum(jnp.asarray(x.shape[0], x.dtype), axis_name)
        return _psum(jnp.sum(x, axis=0), axis_name) / count

    return jax.tree.map(one, tree)


def weighted_mean(tree: PyTree, weights: jax.Array, axis_name: str | None = None) -> PyTree:
    """``sum_k weights[k] * tree[k]`` leaf by leaf: ``[C, ...]`` and ``[C]`` -> ``[...]``.

    ``weights`` must already sum to one over all clients (:func:`normalized_weights`); they are
    cast to each leaf's dtype.
    """
    return jax.tree.map(
        lambda x: _psum(jnp.tensordot(weights.astype(x.dtype), x, axes=(0, 0)), axis_name), tree
    )


def normalized_weights(
    num_examples: jax.Array, dtype=jnp.float32, axis_name: str | None = None
) -> jax.Array:
    """Client weights ``p_k = n_k / sum_j n_j``: ``[C]`` -> ``[C]``."""
    n = num_examples.astype(dtype)
    return n / _psum(jnp.sum(n), axis_name)
