"""The client-axis vocabulary against NumPy, and each reduction sharded equals it unsharded."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from fedjax_deep.fl import clients
from fedjax_deep.fl.execution import CLIENT_AXIS, client_mesh

TREE = {"w": np.arange(24, dtype=np.float32).reshape(4, 2, 3), "b": np.arange(4, dtype=np.float32)}
WEIGHTS = np.array([0.1, 0.2, 0.3, 0.4], np.float32)


def _close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), a, b)


def test_weights_are_normalized_and_scale_free():
    w = clients.normalized_weights(jnp.array([3, 1, 4], jnp.int32))
    np.testing.assert_allclose(w, [3 / 8, 1 / 8, 4 / 8], rtol=1e-6)
    np.testing.assert_allclose(clients.normalized_weights(jnp.array([30, 10, 40])), w, rtol=1e-6)


def test_reductions_against_numpy():
    _close(clients.sum(TREE), jax.tree.map(lambda x: x.sum(0), TREE))
    _close(clients.mean(TREE), jax.tree.map(lambda x: x.mean(0), TREE))
    _close(clients.weighted_mean(TREE, jnp.asarray(WEIGHTS)),
           jax.tree.map(lambda x: np.tensordot(WEIGHTS, x, axes=(0, 0)), TREE))  # fmt: skip


def test_broadcast_copies_one_value_to_every_client():
    out = clients.broadcast({"w": jnp.arange(3.0)}, 5)
    assert out["w"].shape == (5, 3)
    np.testing.assert_array_equal(out["w"], np.tile(np.arange(3.0), (5, 1)))


@pytest.mark.parametrize("chunk", [0, 1, 3, 4, 8])
def test_map_in_chunks_equals_vmap(chunk):
    def fn(x, y):
        return {"s": jnp.sum(x["w"]) * y, "b": x["b"] + y}

    args = (TREE, jnp.arange(4.0))
    _close(clients.map(fn, args, chunk), jax.vmap(fn)(*args))


def test_sharded_reductions_equal_unsharded():
    """Inside ``shard_map`` each reduction sums this device's clients, then across devices."""
    mesh = client_mesh(jax.devices()[:1])
    weights = jnp.asarray(WEIGHTS)

    def reductions(tree, weights, axis_name):
        return (clients.sum(tree, axis_name), clients.mean(tree, axis_name),
                clients.weighted_mean(tree, weights, axis_name),
                clients.normalized_weights(weights, jnp.float32, axis_name))  # fmt: skip

    sharded = jax.shard_map(
        lambda t, w: reductions(t, w, CLIENT_AXIS),
        mesh=mesh,
        in_specs=(P(CLIENT_AXIS), P(CLIENT_AXIS)),
        out_specs=(P(), P(), P(), P(CLIENT_AXIS)),
    )
    _close(jax.jit(sharded)(TREE, weights), reductions(TREE, weights, None))
