"""Heterogeneous local work (fedjax_deep.fl.heterogeneity): a client with a budget of k takes exactly
its first k real steps; a dropped client has weight 0 and keeps its persistent state; the round
compiles once while budgets change; the draws are reproducible; the config's refusals; and FedNova's
reason to exist: on least-squares clients with unequal budgets FedAvg converges away from the
example-weighted minimizer (objective inconsistency) and FedNova removes it."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import model_config
from fedjax_deep.config import ConfigError, default_config, validate
from fedjax_deep.data import load_digits, round_batch_indices, stack_clients
from fedjax_deep.fl import algorithms, init_sim_state, least_squares, make_round, round_client_keys
from fedjax_deep.fl.client import ClientState, make_client_update
from fedjax_deep.fl.heterogeneity import Heterogeneity, client_budgets
from fedjax_deep.models import build_model

SIZES = (12, 7, 3, 9)  # with B=4: 3, 2, 1 and 3 real steps per epoch, padding steps between epochs
B, STEPS, LR = 4, 6, 0.05


@pytest.fixture(autouse=True)
def exact_float32_matmuls():
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def setup():
    ds = load_digits(np.random.default_rng(0))
    start = np.cumsum([0, *SIZES])
    partition = [np.arange(start[i], start[i + 1]) for i in range(len(SIZES))]
    data = stack_clients(ds.train_x, ds.train_y, partition)
    model, params, state = build_model(
        model_config(depth=2, width=4, norm="batch"), ds.input_shape, 10, jax.random.key(0)
    )
    return data, model, params, state


def _batches(data, key):
    batch_keys, train_keys = round_client_keys(key, data.client_ids)
    idx, mask = round_batch_indices(batch_keys, data.num_examples, data.max_examples, B, STEPS)
    return idx, mask, train_keys


def test_a_client_with_budget_k_takes_exactly_its_first_k_real_steps(setup):
    """Budgets (1, 2, 4, 0) against each client run without a budget on only its first k real
    batches (the later ones masked out), with momentum: parameters and optimizer state agree. One
    compiled program serves every run (the budget is an array, not a shape)."""
    data, model, params, state = setup
    opt = optax.sgd(LR, momentum=0.9)
    update = make_client_update(model, opt)
    idx, mask, keys = _batches(data, jax.random.key(3))
    begin = ClientState(params, state, opt.init(params))
    stacked = jax.tree.map(lambda a: jnp.broadcast_to(a, (len(SIZES), *a.shape)), begin)
    xy = {"x": data.x, "y": data.y}

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(s, b, k, d, n):
        return jax.vmap(lambda s, b, k, d, n: update(s, b, k, d, None, n))(s, b, k, d, n)

    budgets = np.array([1, 2, 4, 0])
    ends, metrics = run(stacked, {"idx": idx, "mask": mask}, keys, xy, jnp.asarray(budgets))
    np.testing.assert_array_equal(metrics["num_steps"], [1, 2, 2, 0])  # client 2: 2 real of 6
    real = np.asarray(mask).any(axis=2)  # [C, S]: the steps with a batch
    first_k = real & (np.cumsum(real, axis=1) <= budgets[:, None])
    ref_mask = jnp.asarray(np.asarray(mask) & first_k[..., None])
    full = jnp.full(len(SIZES), STEPS, jnp.int32)
    ref, ref_metrics = run(stacked, {"idx": idx, "mask": ref_mask}, keys, xy, full)
    np.testing.assert_array_equal(ref_metrics["num_steps"], [1, 2, 2, 0])
    chex.assert_trees_all_close(ends, ref, rtol=1e-5, atol=1e-6)
    # The budget bites: client 0 with all its real steps ends elsewhere.
    unbounded, _ = run(stacked, {"idx": idx, "mask": mask}, keys, xy, full)
    kernel = lambda s: np.asarray(s.params["conv_0"]["kernel"][0])  # noqa: E731
    assert np.max(np.abs(kernel(unbounded) - kernel(ends))) > 1e-4
    # A client with budget 0 is bit for bit where it started.
    chex.assert_trees_all_equal(jax.tree.map(lambda a: a[3], ends), begin)


def test_budget_draws_are_per_client_reproducible_and_bounded():
    key = jax.random.key(11)
    ids = jnp.arange(2000, dtype=jnp.int32)
    draw = jax.jit(client_budgets, static_argnums=(0, 3))
    spec = Heterogeneity(budget_dist="uniform", budget_min_fraction=0.25)
    b = np.asarray(draw(spec, key, ids, 8))
    assert b.min() == 2 and b.max() == 8  # ceil(0.25 * 8) .. S
    assert abs(np.mean(b) - 5.0) < 0.15  # uniform on 2..8: sd 2 / sqrt(2000) = 0.045
    # A client's budget depends on its id and the round key only, not on the cohort's order.
    perm = np.random.default_rng(0).permutation(2000)
    np.testing.assert_array_equal(draw(spec, key, ids[perm], 8), b[perm])
    # Stragglers keep floor(f * budget), at least 1; dropouts get 0, at the rates asked for.
    spec = Heterogeneity(step_budgets=(8,) * 2000, straggler_rate=0.3, straggler_fraction=0.5,
                         dropout_rate=0.2)  # fmt: skip
    b = np.asarray(draw(spec, key, ids, 8))
    assert set(np.unique(b)) == {0, 4, 8}
    for value, rate in ((0, 0.2), (4, 0.3 * 0.8)):
        share = np.mean(b == value)
        assert abs(share - rate) < 4 * np.sqrt(rate * (1 - rate) / 2000), (value, share)
    fixed = Heterogeneity(step_budgets=(1, 3, 20), straggler_rate=1.0, straggler_fraction=0.1)
    np.testing.assert_array_equal(draw(fixed, key, jnp.arange(3), 8), [1, 1, 1])


def test_a_dropped_client_has_weight_zero_and_keeps_its_state_and_the_round_compiles_once(setup):
    """SCAFFOLD with local BatchNorm statistics and dropouts over three rounds (budgets 0 or S
    change every round): one trace; each round equals the plain round where the dropped clients
    hold no data (weight 0, no step), and their control variates and statistics are untouched bit
    for bit."""
    data, model, params, state = setup
    alg = algorithms.scaffold(LR, len(SIZES))
    spec = Heterogeneity(dropout_rate=0.4)
    kwargs = dict(batch_size=B, num_local_steps=STEPS, divergence=False)
    round_fn = jax.jit(chex.assert_max_traces(
        make_round(model, optax.sgd(LR), alg, heterogeneity=spec, **kwargs), n=1))  # fmt: skip
    plain = jax.jit(make_round(model, optax.sgd(LR), alg, **kwargs))
    sim = init_sim_state(params, state, alg, num_clients=len(SIZES), local_model_state=True)
    assert set(sim.clients) == {"algorithm", "model_state"}
    dropped = []
    for r in range(3):
        key = jax.random.key(100 + r)
        budgets = np.asarray(client_budgets(spec, key, data.client_ids, STEPS))
        new, metrics = round_fn(sim, data, key)
        kept = data.replace(num_examples=jnp.where(budgets > 0, data.num_examples, 0))
        ref, _ = plain(sim, kept, key)
        chex.assert_trees_all_close(new.params, ref.params, rtol=1e-6, atol=1e-7)
        chex.assert_trees_all_close(new.rule_state, ref.rule_state, rtol=1e-6, atol=1e-7)
        chex.assert_trees_all_close(new.clients, ref.clients, rtol=1e-6, atol=1e-7)
        for c in np.flatnonzero(budgets == 0):
            chex.assert_trees_all_equal(
                jax.tree.map(lambda a, c=c: a[c], new.clients),
                jax.tree.map(lambda a, c=c: a[c], sim.clients),
            )
        assert int(metrics["train/dropped_clients"]) == int(np.sum(budgets == 0))
        took = budgets > 0
        steps = np.array([6.0, 4.0, 2.0, 6.0])  # each client's real steps in S=6
        want = steps[took].mean() if took.any() else 0.0
        np.testing.assert_allclose(metrics["train/steps_mean"], want)
        dropped.append(int(np.sum(~took)))
        sim = new
    assert 0 < sum(dropped) < 12, dropped  # the draws above did drop someone, not everyone


def test_config_refuses_unequal_work_it_cannot_run():
    c = default_config()
    c.fl.num_clients, c.fl.step_budgets = 3, (1, 2)
    with pytest.raises(ConfigError, match=r"fl.step_budgets.*fl.num_clients=3"):
        validate(c)
    c.fl.step_budgets, c.fl.budget_dist = (1, 2, 3), "uniform"
    with pytest.raises(ConfigError, match=r"fl.budget_dist.*already fixes"):
        validate(c)
    c.fl.step_budgets, c.mode = (), "centralized"
    with pytest.raises(ConfigError, match=r"fl.budget_dist.*needs mode fl"):
        validate(c)
    c.mode = "fl"
    validate(c)


def _fixed_point(data, budgets, lr, normalize):
    """The exact fixed point of FedAvg (``normalize=False``) or FedNova on least-squares clients
    under gradient descent: client ``i``'s update is ``(I - (I - lr H_i)^k_i)(x - w_i)``, and the
    server's (normalized) weighted mean of them vanishes."""
    n = data["num_examples"]
    lhs, rhs = 0.0, 0.0
    for i, k in enumerate(budgets):
        x = data["x"][i, : int(n[i])]
        h = x.T @ x / n[i]
        w_i = np.linalg.solve(h, x.T @ data["y"][i, : int(n[i])] / n[i])
        m = (np.eye(len(h)) - np.linalg.matrix_power(np.eye(len(h)) - lr * h, k)) * n[i] / n.sum()
        m = m / k if normalize else m
        lhs, rhs = lhs + m, rhs + m @ w_i
    return np.linalg.solve(lhs, rhs)


def test_fednova_removes_fedavgs_objective_inconsistency_under_unequal_budgets():
    with jax.enable_x64(True):
        data = least_squares.make_clients(np.random.default_rng(0), (6, 20, 9, 40), 3)
        optimum = least_squares.minimizer(data, "examples")
        budgets, lr = (1, 2, 4, 8), 0.05
        avg, taken = least_squares.run(algorithms.fedavg(), data, budgets, lr, 300)
        nova, _ = least_squares.run(algorithms.fednova(0.0), data, budgets, lr, 300)
        np.testing.assert_array_equal(taken, budgets)
        # Both converge, to their exact fixed points (the masks take exactly k_i steps).
        np.testing.assert_allclose(avg[-1], _fixed_point(data, budgets, lr, False), atol=1e-10)
        np.testing.assert_allclose(nova[-1], _fixed_point(data, budgets, lr, True), atol=1e-10)
        gap_avg = np.linalg.norm(avg[-1] - optimum)
        gap_nova = np.linalg.norm(nova[-1] - optimum)
        assert gap_avg > 0.3, gap_avg  # FedAvg weights client i by n_i k_i: another objective
        assert gap_nova < 0.15 * gap_avg, (gap_nova, gap_avg)  # FedNova: O(lr) local drift only
