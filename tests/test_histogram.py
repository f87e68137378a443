"""The authors' divergence view: per-conv-layer histograms of client weights minus the client mean."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_deep.metrics import conv_kernel_paths, deviation_histograms, symmetric_edges
from fedjax_deep.models import abstract_params
from tests.conftest import model_config


def _clients(num_clients=3, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "conv_0": {"kernel": jnp.asarray(rng.normal(size=(num_clients, 3, 3, 2, 4)), jnp.float32),
                   "bias": jnp.zeros((num_clients, 4))},
        "conv_1": {"kernel": jnp.asarray(rng.normal(size=(num_clients, 5, 4, 4)), jnp.float32)},
        "head": {"kernel": jnp.asarray(rng.normal(size=(num_clients, 8, 10)), jnp.float32)},
    }  # fmt: skip


def test_conv_kernels_are_the_spatial_kernels_of_a_real_model():
    params = abstract_params(model_config(name="plain_cnn", depth=2, width=4), (8, 8, 1), 10)
    paths = conv_kernel_paths(params)
    assert len(paths) == 2 and all(p[-1] == "kernel" for p in paths)
    leaves = [params[p[0]][p[1]] for p in paths]
    assert [x.shape for x in leaves] == [(3, 3, 1, 4), (3, 3, 4, 4)]
    assert len(conv_kernel_paths(params, min_ndim=2)) == 3  # plus the dense head


def test_counts_sum_to_the_weights_and_match_numpy():
    params = _clients()
    one = jax.tree.map(lambda x: x[0], params)
    paths = conv_kernel_paths(one)
    assert paths == [("conv_0", "kernel"), ("conv_1", "kernel")]
    edges = symmetric_edges(1.0, 9)
    hist = jax.jit(deviation_histograms, static_argnums=2)(params, edges, tuple(paths))
    for path in paths:
        w = np.asarray(params[path[0]]["kernel"], np.float64)
        counts = np.asarray(hist["/".join(path)])
        assert counts.shape == (11,) and counts.sum() == w.size
        dev = (w - w.mean(axis=0)).ravel()
        expected = np.bincount(np.searchsorted(edges, dev, side="right"), minlength=11)
        np.testing.assert_array_equal(counts, expected)
        assert counts[0] == np.sum(dev < -1.0) and counts[-1] == np.sum(dev >= 1.0)


def test_identical_clients_give_one_spike_at_zero():
    params = jax.tree.map(lambda x: jnp.broadcast_to(x[:1], x.shape), _clients(num_clients=4))
    edges = symmetric_edges(0.5, 5)  # the middle bin [-0.1, 0.1) holds 0
    hist = deviation_histograms(params, edges, [("conv_0", "kernel")])
    counts = np.asarray(hist["conv_0/kernel"])
    assert counts[3] == 4 * 3 * 3 * 2 * 4 and counts.sum() == counts[3]


def test_weighted_mean_moves_the_centre():
    w = jnp.asarray([[0.0], [1.0]])[:, None, None, :]  # two clients, one weight: 0 and 1
    params = {"c": {"kernel": w}}
    edges = np.asarray([-2.0, -0.6, -0.05, 0.05, 0.6, 2.0])
    plain = deviation_histograms(params, edges, [("c", "kernel")])["c/kernel"]
    assert np.asarray(plain).tolist() == [0, 0, 1, 0, 1, 0, 0]  # -0.5 and +0.5
    heavy = deviation_histograms(params, edges, [("c", "kernel")], jnp.asarray([1.0, 0.0]))
    assert np.asarray(heavy["c/kernel"]).tolist() == [0, 0, 0, 1, 0, 1, 0]  # 0 and +1


def test_one_trace_over_rounds():
    fn = chex.assert_max_traces(deviation_histograms, n=1)
    jitted = jax.jit(fn, static_argnums=2)
    paths = (("conv_0", "kernel"),)
    for seed in range(3):
        jitted(_clients(seed=seed), symmetric_edges(1.0), paths)


def test_bad_edges_are_refused():
    with pytest.raises(ValueError, match="max_abs > 0"):
        symmetric_edges(0.0)
