"""Own losses: per-example values masked by the library, every metric reported, bad shapes refused."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fedjax_deep import losses
from fedjax_deep.data import ClientData
from fedjax_deep.errors import FieldError
from fedjax_deep.fl import algorithms, init_sim_state, make_round
from fedjax_deep.metrics import batch_eval_data, make_evaluate
from fedjax_deep.models import wrap_module


class Linear(nnx.Module):
    """A module that takes neither ``train=`` nor ``mask=`` (the wrapper supplies them)."""

    def __init__(self, din, dout, rngs):
        self.dense = nnx.Linear(din, dout, rngs=rngs)

    def __call__(self, x):
        return self.dense(x)


def test_default_loss_equals_the_three_value_form():
    logits = jnp.asarray([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [np.nan, 0.0]])
    y = jnp.asarray([0, 0, 0, 1])
    mask = jnp.asarray([True, True, True, False])  # the NaN row is padding
    loss, num, sums = losses.masked_loss(
        losses.softmax_cross_entropy, logits, {"y": y, "mask": mask}
    )
    ce = optax.softmax_cross_entropy_with_integer_labels(logits[:3], y[:3])
    np.testing.assert_allclose(loss, ce.mean(), rtol=1e-6)
    assert float(num) == 3.0 and float(sums["accuracy"]) == 2.0
    assert losses.masked_cross_entropy(logits, y, mask)[2] == 2.0


def test_regression_loss_through_the_round_and_the_evaluation():
    """Mean squared error on a linear model: one client, one full-batch SGD step, equal to the
    closed form in float64; the round and the evaluation report ``mse``, no accuracy."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(6, 3))
        y = rng.normal(size=(6,))
        model, params, state = wrap_module(Linear(3, 1, nnx.Rngs(0)))
        params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        rule = algorithms.fedavg(optax.sgd(1.0))
        round_fn = jax.jit(make_round(model, optax.sgd(0.1), rule, batch_size=6,
                                      num_local_steps=1, divergence=False, loss_fn=losses.mean_squared_error))  # fmt: skip
        data = ClientData(jnp.asarray(x[None]), jnp.asarray(y[None]), jnp.asarray([6], jnp.int32),
                          jnp.asarray([0], jnp.int32))  # fmt: skip
        new, metrics = round_fn(init_sim_state(params, state, rule), data, jax.random.key(0))
        w, b = np.asarray(params["dense"]["kernel"][:, 0]), float(params["dense"]["bias"][0])
        r = x @ w + b - y
        assert float(metrics["train/mse"]) == pytest.approx(np.mean(r**2), rel=1e-12)
        assert "train/accuracy" not in metrics
        w1 = w - 0.1 * 2 * x.T @ r / 6
        np.testing.assert_allclose(new.params["dense"]["kernel"][:, 0], w1, rtol=1e-12)
        evaluate = jax.jit(make_evaluate(model, losses.mean_squared_error))
        out = evaluate(new.params, {}, batch_eval_data(x, y, 4))  # 2 batches, 2 padding rows
        r1 = x @ w1 + (b - 0.1 * 2 * r.mean()) - y
        assert set(out) == {"eval/loss", "eval/mse"}
        assert float(out["eval/mse"]) == pytest.approx(np.mean(r1**2), rel=1e-12)


def test_a_loss_returning_a_mean_is_refused_in_one_line():
    model, params, state = wrap_module(Linear(3, 2, nnx.Rngs(0)))
    evaluate = make_evaluate(model, lambda out, batch: (jnp.mean(out), {}))
    with pytest.raises(FieldError, match=r"shape \(\) where one value per example") as e:
        evaluate(params, state, batch_eval_data(np.ones((4, 3), np.float32), np.zeros(4), 4))
    assert "\n" not in str(e.value)


def test_register_loss_is_a_valid_config_choice():
    from fedjax_deep.config import default_config, validate

    c = default_config()
    c.loss.name = "my_test_loss"
    with pytest.raises(FieldError, match="loss.name"):
        validate(c)
    losses.register_loss("my_test_loss", losses.mean_squared_error)
    try:
        validate(c)
        assert losses.get_loss("my_test_loss") is losses.mean_squared_error
    finally:
        del losses.LOSSES["my_test_loss"]
