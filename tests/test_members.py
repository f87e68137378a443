"""The member axis: simulations stacked on a leading axis equal the same simulations run apart."""

import jax
import numpy as np
import optax
import pytest

from conftest import model_config
from fedjax_deep.data import iid, load_digits, stack_clients
from fedjax_deep.fl import (
    algorithms,
    init_sim_state,
    make_round,
    stack_members,
    sweep_over_members,
)
from fedjax_deep.models import build_model


@pytest.mark.parametrize("how", ["vmap", "map"])
def test_seed_axis_equals_separate_runs(how):
    model_cfg = model_config(depth=2, width=4, norm="batch")
    rule = algorithms.fedavg(optax.sgd(1.0))
    opt = optax.sgd(0.05, momentum=0.9)
    states, datas, keys = [], [], []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        ds = load_digits(rng)
        data = stack_clients(ds.train_x[:60], ds.train_y[:60], iid(60, 3, rng))
        model, params, state = build_model(model_cfg, (8, 8, 1), 10, jax.random.key(seed))
        states.append(init_sim_state(params, state, rule))
        datas.append(data)
        keys.append(jax.random.key(100 + seed))
    round_fn = make_round(model, opt, rule, batch_size=5, num_local_steps=3)
    separate = []
    for state, data, key in zip(states, datas, keys, strict=True):
        for r in range(2):
            state, metrics = jax.jit(round_fn)(state, data, jax.random.fold_in(key, r))
        separate.append((state, metrics))
    together = jax.jit(sweep_over_members(round_fn, how))
    state, data = stack_members(states), stack_members(datas)
    for r in range(2):
        rkeys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(jax.numpy.stack(keys), r)
        state, metrics = together(state, data, rkeys)
    for s, (one_state, one_metrics) in enumerate(separate):
        for a, b in zip(
            jax.tree.leaves(one_state.params), jax.tree.leaves(state.params), strict=True
        ):
            np.testing.assert_allclose(b[s], a, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(metrics["train/loss"][s], one_metrics["train/loss"], rtol=1e-5)


def test_shared_arguments_are_passed_once():
    def fn(x, y):
        return x + y

    out = sweep_over_members(fn, "map", in_axes=(0, None))(np.arange(3.0), 10.0)
    np.testing.assert_array_equal(out, [10.0, 11.0, 12.0])
    with pytest.raises(ValueError, match="how='pmap'"):
        sweep_over_members(fn, "pmap")
