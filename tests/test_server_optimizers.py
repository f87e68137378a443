"""FedAdam, FedYogi and FedAdagrad against a NumPy transcription of Reddi et al. 2021, Alg. 2
(float64, three rounds, through FedAvg's server update), and what ``server_opt.variant`` picks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_deep.config import default_config
from fedjax_deep.fl import algorithms
from fedjax_deep.optimizers import make_server_optimizer

LR, B1, B2, TAU = 0.3, 0.9, 0.99, 1e-3


def _alg2(kind, x0, offsets, weights):
    """Alg. 2 of Reddi et al., line by line in NumPy: client ``i`` returns ``x_t + offsets[t][i]``
    (``Delta_t^i``), ``Delta_t`` is their weighted mean, ``m_{-1} = 0``, ``v_{-1} = tau^2``, and
    ``x_{t+1} = x_t + eta m_t / (sqrt(v_t) + tau)``."""
    x, m, v = x0.copy(), np.zeros_like(x0), np.full_like(x0, TAU**2)
    out = []
    for round_offsets in offsets:
        delta = sum(w * d for w, d in zip(weights, round_offsets, strict=True))
        m = B1 * m + (1 - B1) * delta
        if kind == "adagrad":
            v = v + delta**2
        elif kind == "adam":
            v = B2 * v + (1 - B2) * delta**2
        else:
            v = v - (1 - B2) * delta**2 * np.sign(v - delta**2)
        x = x + LR * m / (np.sqrt(v) + TAU)
        out.append(x.copy())
    return out


def _server_opt(name, variant="paper"):
    c = default_config().server_opt
    c.name, c.learning_rate, c.b1, c.b2, c.eps, c.variant = name, LR, B1, B2, TAU, variant
    return make_server_optimizer(c)


def _run(optimizer, x0, offsets, weights):
    """FedAvg's server update through ``optimizer``, one round per entry of ``offsets``: the clients
    return the round's server model plus their offset."""
    alg = algorithms.fedavg(optimizer)
    x = {"w": jnp.asarray(x0)}
    state = alg.server_init(x)
    apply = jax.jit(alg.server_apply)
    out = []
    for round_offsets in offsets:
        ys = {"w": x["w"][None] + jnp.asarray(np.stack(round_offsets))}
        x, state = apply(x, state, ys, jnp.asarray(weights))
        out.append(np.asarray(x["w"]))
    return out


@pytest.mark.parametrize("kind", ["adam", "yogi", "adagrad"])
def test_paper_variant_equals_a_numpy_transcription_of_alg2(kind):
    with jax.enable_x64(True):
        rng = np.random.default_rng(7)
        x0 = rng.standard_normal(4)
        weights = np.array([0.5, 0.3, 0.2])
        # Updates from 1e-4 (below tau) to 1, with sign changes between rounds (Yogi's sign).
        scales = np.array([1e-4, 3e-3, 0.05, 1.0])
        offsets = [[rng.standard_normal(4) * scales for _ in weights] for _ in range(3)]
        ref = _alg2(kind, x0, offsets, weights)
        got = _run(_server_opt(kind), x0, offsets, weights)
        for r, g in zip(ref, got, strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-14)
        # optax's bias-corrected variant is another method: far from Alg. 2 after three rounds.
        if kind != "adagrad":
            other = _run(_server_opt(kind, "optax"), x0, offsets, weights)
            assert np.max(np.abs(other[-1] - ref[-1])) > 1e-2


def test_optax_variant_is_optax_and_paper_is_the_default():
    assert default_config().server_opt.variant == "paper"
    with jax.enable_x64(True):
        x0 = np.array([0.5, -1.0])
        ys = [[np.array([1e-3, -0.2])], [np.array([2e-3, 0.1])]]
        got = _run(_server_opt("adagrad", "optax"), x0, ys, np.ones(1))
        want = _run(optax.adagrad(LR, initial_accumulator_value=0.0, eps=TAU), x0, ys, np.ones(1))
        np.testing.assert_array_equal(got[-1], want[-1])
        # Alg. 2's Adagrad: momentum (1 - b1), v = tau^2 + Delta^2, tau outside the root.
        paper = _run(_server_opt("adagrad"), x0, ys[:1], np.ones(1))
        step = paper[0][0] - x0[0]
        np.testing.assert_allclose(step, LR * (1 - B1) * 1e-3 / (np.sqrt(TAU**2 + 1e-6) + TAU))
