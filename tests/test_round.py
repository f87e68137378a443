"""The vmapped round against plain references: a Python loop over clients, large-batch SGD."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import model_config
from fedjax_deep.data import ClientData, load_digits, round_batch_indices, stack_clients
from fedjax_deep.fl import (
    ClientState,
    algorithms,
    clients,
    init_sim_state,
    make_client_update,
    make_round,
    round_client_keys,
)
from fedjax_deep.models import build_model

LR, MOMENTUM, WD = 0.05, 0.9, 1e-3


def _client_opt():
    return optax.chain(optax.add_decayed_weights(WD), optax.sgd(LR, momentum=MOMENTUM))


def _digits_clients(sizes, rng):
    ds = load_digits(rng)
    start = np.cumsum([0, *sizes])
    partition = [np.arange(start[i], start[i + 1]) for i in range(len(sizes))]
    return ds, stack_clients(ds.train_x, ds.train_y, partition), partition


def _reference_client(model, params, state, x, y, idx, mask, opt_state=None):
    """Trains one client with a Python loop over its real (unpadded) batches."""
    opt = _client_opt()
    opt_state = opt.init(params) if opt_state is None else opt_state

    @jax.jit
    def step(params, state, opt_state, bx, by):
        def loss(p):
            logits, new_state = model.apply(p, state, bx, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, by).mean(), new_state

        grads, new_state = jax.grad(loss, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state, opt_state

    for s in range(idx.shape[0]):
        real = idx[s][mask[s]]
        if len(real) == 0:
            continue
        params, state, opt_state = step(params, state, opt_state, x[real], y[real])
    return params, state, opt_state


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_round_equals_loop_over_clients_with_numpy_average(norm, rng):
    sizes = [20, 13, 7]  # unequal; with B=6 the small clients get partial and all-padding batches
    batch_size, epochs = 6, 2
    ds, client_data, partition = _digits_clients(sizes, rng)
    model, params, state = build_model(
        model_config(depth=2, width=4, norm=norm), ds.input_shape, 10, jax.random.key(0)
    )
    num_steps = epochs * -(-max(sizes) // batch_size)
    rule = algorithms.fedavg(optax.sgd(1.0))
    round_fn = jax.jit(
        make_round(model, _client_opt(), rule, batch_size=batch_size, num_local_steps=num_steps)
    )
    key = jax.random.key(42)
    new_state, metrics = round_fn(init_sim_state(params, state, rule), client_data, key)

    batch_keys, _ = round_client_keys(key, client_data.client_ids)
    idx, mask = round_batch_indices(
        batch_keys, client_data.num_examples, max(sizes), batch_size, num_steps
    )
    idx, mask = np.asarray(idx), np.asarray(mask)
    trained = []
    for c, part in enumerate(partition):
        x, y = ds.train_x[part], ds.train_y[part]
        trained.append(_reference_client(model, params, state, x, y, idx[c], mask[c])[:2])
    w = np.asarray(sizes, np.float64) / sum(sizes)

    def np_average(*leaves):
        return sum(wk * np.asarray(leaf, np.float64) for wk, leaf in zip(w, leaves, strict=False))

    expected_params = jax.tree.map(np_average, *[t[0] for t in trained])
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0),
        new_state.params,
        expected_params,
    )
    if norm == "batch":
        expected_stats = jax.tree.map(np_average, *[t[1] for t in trained])
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
            new_state.model_state,
            expected_stats,
        )
    assert int(new_state.round) == 1
    assert int(metrics["train/num_examples"]) == epochs * sum(sizes)
    # all-padding batches (BatchNorm over zero examples is 0/0) must not leak NaN into metrics
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_one_local_step_fedavg_equals_large_batch_sgd():
    with jax.enable_x64(True):
        sizes = [10, 6, 4]
        ds, client_data, partition = _digits_clients(sizes, np.random.default_rng(1))
        client_data = client_data.replace(x=client_data.x.astype(jnp.float64))
        model, params, state = build_model(
            model_config(depth=3, width=4), ds.input_shape, 10, jax.random.key(0)
        )
        params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        rule = algorithms.fedavg(optax.sgd(1.0))
        round_fn = jax.jit(
            make_round(
                model,
                _client_opt(),
                rule,
                batch_size=max(sizes),
                num_local_steps=1,
                divergence=False,
            )
        )
        fl_state, _ = round_fn(init_sim_state(params, state, rule), client_data, jax.random.key(0))

        union = np.concatenate(partition)
        x, y = jnp.asarray(ds.train_x[union], jnp.float64), jnp.asarray(ds.train_y[union])

        def loss(p):
            logits, _ = model.apply(p, state, x, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        opt = _client_opt()
        updates, _ = opt.update(jax.grad(loss)(params), opt.init(params), params)
        cl_params = optax.apply_updates(params, updates)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, atol=1e-12, rtol=1e-12),
            fl_state.params,
            cl_params,
        )


def test_centralized_round_keeps_optimizer_state_across_rounds(rng):
    ds, client_data, partition = _digits_clients([30], rng)
    model, params, state = build_model(
        model_config(depth=2, width=4), ds.input_shape, 10, jax.random.key(0)
    )
    rule = algorithms.fedavg(optax.sgd(1.0))
    round_fn = jax.jit(
        make_round(model, _client_opt(), rule, batch_size=8, num_local_steps=4, divergence=False)
    )
    server = init_sim_state(params, state, rule, client_optimizer=_client_opt(), num_clients=1)
    ref_params, ref_state, ref_opt = params, state, None
    x, y = ds.train_x[partition[0]], ds.train_y[partition[0]]
    for r in range(2):
        key = jax.random.key(r)
        server, _ = round_fn(server, client_data, key)
        batch_keys, _ = round_client_keys(key, client_data.client_ids)
        idx, mask = round_batch_indices(batch_keys, client_data.num_examples, 30, 8, 4)
        ref_params, ref_state, ref_opt = _reference_client(
            model, ref_params, ref_state, x, y, np.asarray(idx[0]), np.asarray(mask[0]), ref_opt
        )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0), server.params, ref_params
    )


def test_round_compiles_once_over_three_rounds(rng):
    ds, client_data, _ = _digits_clients([12, 12, 9], rng)
    model, params, state = build_model(
        model_config(depth=2, width=4, norm="batch"), ds.input_shape, 10, jax.random.key(0)
    )
    rule = algorithms.fedavg(optax.sgd(1.0))
    round_fn = make_round(model, _client_opt(), rule, batch_size=4, num_local_steps=3)
    round_step = jax.jit(chex.assert_max_traces(round_fn, n=1), donate_argnums=0)
    server = init_sim_state(params, state, rule)
    for r in range(3):
        server, metrics = round_step(server, client_data, jax.random.key(r))
        assert np.isfinite(float(metrics["train/loss"]))
    assert int(server.round) == 3


def test_identical_clients_have_zero_divergence_and_unchanged_average(rng):
    ds, one_client, _ = _digits_clients([16], rng)
    three = ClientData(
        x=jnp.repeat(one_client.x, 3, axis=0),
        y=jnp.repeat(one_client.y, 3, axis=0),
        num_examples=jnp.array([16, 16, 16], jnp.int32),
        client_ids=jnp.zeros(3, jnp.int32),  # same id -> same keys -> same batches
    )
    model, params, state = build_model(
        model_config(depth=2, width=4), ds.input_shape, 10, jax.random.key(0)
    )
    rule = algorithms.fedavg(optax.sgd(1.0))
    round_fn = jax.jit(make_round(model, _client_opt(), rule, batch_size=4, num_local_steps=5))
    key = jax.random.key(7)
    s3, m3 = round_fn(init_sim_state(params, state, rule), three, key)
    s1, _ = round_fn(init_sim_state(params, state, rule), one_client, key)
    for name, value in m3.items():
        if name.startswith("divergence/") and name.rsplit("/", 1)[-1] in (
            "relative",
            "update",
            "grad",
        ):
            assert float(value) == pytest.approx(0.0, abs=1e-10), name
    assert float(m3["divergence/mean/cosine"]) == pytest.approx(1.0, abs=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), s3.params, s1.params)


def test_client_update_on_materialized_batches_equals_indexed_data(rng):
    ds, client_data, _ = _digits_clients([10, 10], rng)
    model, params, state = build_model(
        model_config(depth=2, width=4, norm="batch"), ds.input_shape, 10, jax.random.key(0)
    )
    opt = _client_opt()
    client_update = jax.vmap(make_client_update(model, opt))
    batch_keys, train_keys = round_client_keys(jax.random.key(3), client_data.client_ids)
    idx, mask = round_batch_indices(batch_keys, client_data.num_examples, 10, 4, 6)
    start = ClientState(
        clients.broadcast(params, 2),
        clients.broadcast(state, 2),
        jax.vmap(opt.init)(clients.broadcast(params, 2)),
    )
    data = {"x": client_data.x, "y": client_data.y}
    by_index, m1 = client_update(start, {"idx": idx, "mask": mask}, train_keys, data)
    batches = {
        "x": jax.vmap(lambda x, i: x[i])(client_data.x, idx),
        "y": jax.vmap(lambda y, i: y[i])(client_data.y, idx),
        "mask": mask,
    }
    assert batches["x"].shape == (2, 6, 4, 8, 8, 1)
    materialized, m2 = client_update(start, batches, train_keys)
    chex.assert_trees_all_close(by_index, materialized, atol=1e-6)
    chex.assert_trees_all_close(m1, m2, atol=1e-6)
    assert m1["num_steps"].tolist() == [6, 6]  # 10 examples, B=4: 4, 4, 2, then 4, 4, 2


def test_a_cohort_drawn_by_the_caller_equals_the_round_drawing_it(rng):
    """The cohort is decided by ``cohort_size``: drawn in the round, or (``draw_cohort=False``) by
    the caller with the same key split, as the host placement does; the population's per-client
    rows are gathered and scattered by client id either way."""
    from fedjax_deep.fl import sample_cohort

    ds, data, _ = _digits_clients([9, 7, 12, 5, 8], rng)
    model, params, state = build_model(
        model_config(depth=2, width=4), ds.input_shape, 10, jax.random.key(0)
    )
    alg = algorithms.scaffold(LR, 5)
    kwargs = dict(batch_size=4, num_local_steps=3, cohort_size=2)
    in_round = jax.jit(make_round(model, _client_opt(), alg, **kwargs))
    by_caller = jax.jit(make_round(model, _client_opt(), alg, draw_cohort=False, **kwargs))
    a = b = init_sim_state(params, state, alg, num_clients=5)
    for r in range(3):
        key = jax.random.key(r)
        a, ma = in_round(a, data, key)
        key, cohort_key = jax.random.split(key)
        ids = sample_cohort(cohort_key, data.num_examples, 2)
        b, mb = by_caller(b, jax.tree.map(lambda x, ids=ids: x[ids], data), key)
    chex.assert_trees_all_equal(a, b)
    chex.assert_trees_all_equal(ma, mb)
