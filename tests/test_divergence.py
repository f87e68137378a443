"""Every divergence metric against a direct NumPy computation of SPEC.md's formula."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_deep.metrics import cka_metrics, divergence_metrics, linear_cka

C = 4


def _np_relative(w, p):
    wbar = np.tensordot(p, w, axes=1)
    return sum(p[k] * np.sum((w[k] - wbar) ** 2) for k in range(len(p))) / np.sum(wbar**2)


def _np_update(d, p):
    dbar = np.tensordot(p, d, axes=1)
    num = sum(p[k] * np.sum((d[k] - dbar) ** 2) for k in range(len(p)))
    return num / sum(p[k] * np.sum(d[k] ** 2) for k in range(len(p)))


def _np_cosine(d, p):
    num = den = 0.0
    for k, j in itertools.permutations(range(len(p)), 2):
        cos = np.sum(d[k] * d[j]) / np.sqrt(np.sum(d[k] ** 2) * np.sum(d[j] ** 2))
        num += p[k] * p[j] * cos
        den += p[k] * p[j]
    return num / den


@pytest.fixture
def setup(rng):
    server = {
        "conv_0": {"kernel": rng.normal(size=(3, 3, 1, 4))},
        "head": {"kernel": rng.normal(size=(4, 10)), "bias": rng.normal(size=(10,))},
    }
    clients = {
        k: {n: v[None] + 0.1 * rng.normal(size=(C, *v.shape)) for n, v in layer.items()}
        for k, layer in server.items()
    }
    grads = {
        k: {n: rng.normal(size=(C, *v.shape)) + 0.5 for n, v in layer.items()}
        for k, layer in server.items()
    }
    p = rng.uniform(1, 5, size=C)

    def f32(tree):
        return {k: {n: v.astype(np.float32) for n, v in d.items()} for k, d in tree.items()}

    return f32(server), f32(clients), f32(grads), (p / p.sum()).astype(np.float32)


def test_metrics_equal_numpy_formulas(setup):
    server, clients, grads, p = setup
    out = divergence_metrics(clients, server, jnp.asarray(p), ("conv_0", "head"), grads)
    for layer in ("conv_0/kernel", "head/kernel", "head/bias"):
        mod, leaf = layer.split("/")
        w, g, gr = (t[mod][leaf].astype(np.float64) for t in (clients, server, grads))
        expected = {
            "relative": _np_relative(w, p),
            "update": _np_update(w - g[None], p),
            "cosine": _np_cosine(w - g[None], p),
            "grad": _np_update(gr, p),
        }
        for metric, value in expected.items():
            assert float(out[f"divergence/{layer}/{metric}"]) == pytest.approx(value, rel=1e-4)
    for metric in ("relative", "update", "cosine", "grad"):
        mean = np.mean([float(out[f"divergence/{m}/kernel/{metric}"]) for m in ("conv_0", "head")])
        assert float(out[f"divergence/mean/{metric}"]) == pytest.approx(mean, rel=1e-6)


def test_bias_is_reported_but_not_in_headline(setup):
    server, clients, _, p = setup
    out = divergence_metrics(clients, server, jnp.asarray(p), ("conv_0", "head"))
    assert "divergence/head/bias/relative" in out
    kernels = [float(out[f"divergence/{m}/kernel/relative"]) for m in ("conv_0", "head")]
    assert float(out["divergence/mean/relative"]) == pytest.approx(np.mean(kernels), rel=1e-6)
    assert "divergence/mean/grad" not in out


def test_update_dispersion_is_in_unit_interval_and_scale_free(setup):
    server, clients, _, p = setup
    out = divergence_metrics(clients, server, jnp.asarray(p), ("conv_0", "head"))
    scaled = {
        k: {n: server[k][n][None] + 10.0 * (v - server[k][n][None]) for n, v in d.items()}
        for k, d in clients.items()
    }
    out_scaled = divergence_metrics(scaled, server, jnp.asarray(p), ("conv_0", "head"))
    for layer in ("conv_0", "head"):
        u = float(out[f"divergence/{layer}/kernel/update"])
        assert 0.0 <= u <= 1.0
        assert float(out_scaled[f"divergence/{layer}/kernel/update"]) == pytest.approx(u, rel=1e-4)


def test_identical_clients_give_zero():
    server = {"l": {"kernel": jnp.ones((3, 2))}}
    clients = {"l": {"kernel": jnp.stack([jnp.full((3, 2), 2.0)] * 3)}}
    grads = {"l": {"kernel": jnp.stack([jnp.full((3, 2), 0.5)] * 3)}}
    out = divergence_metrics(clients, server, jnp.full(3, 1 / 3), ("l",), grads)
    assert float(out["divergence/l/kernel/relative"]) == 0.0
    assert float(out["divergence/l/kernel/update"]) == 0.0
    assert float(out["divergence/l/kernel/grad"]) == 0.0
    assert float(out["divergence/l/kernel/cosine"]) == pytest.approx(1.0, abs=1e-6)
    unmoved = divergence_metrics(
        {"l": {"kernel": jnp.stack([server["l"]["kernel"]] * 3)}},
        server,
        jnp.full(3, 1 / 3),
        ("l",),
    )
    assert float(unmoved["divergence/l/kernel/update"]) == 0.0  # 0/0 is defined as 0


def _np_linear_cka(x, y):
    """Kornblith et al. (2019), eq. for linear CKA on feature matrices: ||Y^T X||^2 / (||X^T X||
    ||Y^T Y||) with columns centred."""
    x = x.reshape(len(x), -1) - x.reshape(len(x), -1).mean(0)
    y = y.reshape(len(y), -1) - y.reshape(len(y), -1).mean(0)
    return np.sum((y.T @ x) ** 2) / np.sqrt(np.sum((x.T @ x) ** 2) * np.sum((y.T @ y) ** 2))


def test_cka_metrics_are_the_weighted_mean_pairwise_linear_cka():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((16, 5, 3))
    reps = {  # 4 clients: the same layer, increasingly different representations
        "conv_0": np.stack([base + s * rng.standard_normal(base.shape) for s in (0.0, 0.3, 1, 3)]),
        "head": rng.standard_normal((C, 16, 10)),
    }
    reps = {k: v.astype(np.float32) for k, v in reps.items()}
    for p in (np.full(C, 1 / C), np.array([0.1, 0.2, 0.3, 0.4])):
        out = cka_metrics({k: jnp.asarray(v) for k, v in reps.items()}, jnp.asarray(p))
        for name, r in reps.items():
            num = den = 0.0
            for k, j in itertools.permutations(range(C), 2):
                num += p[k] * p[j] * _np_linear_cka(r[k], r[j])
                den += p[k] * p[j]
            np.testing.assert_allclose(out[f"divergence/{name}/cka"], num / den, rtol=1e-4)
        # The mean leaves the head out.
        np.testing.assert_allclose(out["divergence/mean/cka"], out["divergence/conv_0/cka"])
    pair = [float(linear_cka(jnp.asarray(reps["conv_0"][0]), jnp.asarray(reps["conv_0"][k])))
            for k in (1, 2, 3)]  # fmt: skip
    assert 1 > pair[0] > pair[1] > pair[2] > 0  # more noise, less similar


def test_linear_cka_is_invariant_to_rotation_scale_and_shift_only():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 6)).astype(np.float32)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    y = (3.0 * x @ q + 5.0).astype(np.float32)  # rotated, scaled, shifted: the same representation
    np.testing.assert_allclose(linear_cka(jnp.asarray(x), jnp.asarray(y)), 1.0, rtol=1e-5)
    squash = x * np.array([1, 1, 1, 1, 1, 0.01], np.float32)  # not an isotropic scaling
    assert float(linear_cka(jnp.asarray(x), jnp.asarray(squash))) < 0.95
    assert float(linear_cka(jnp.asarray(x), jnp.zeros_like(x))) == 0.0  # constant: 0, not NaN
