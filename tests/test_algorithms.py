"""Federated algorithms: each round against a plain per-client Python reference written here, the
identities that tie them to FedAvg, their fixed points on heterogeneous quadratics, FedAdam's sign,
and persistent state under partial participation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import model_config
from fedjax_deep.data import load_digits, round_batch_indices, stack_clients
from fedjax_deep.fl import algorithms, init_sim_state, make_round, round_client_keys
from fedjax_deep.fl.algorithms.fednova import effective_steps
from fedjax_deep.losses import masked_cross_entropy
from fedjax_deep.models import build_model

LR = 0.05


@pytest.fixture(autouse=True)
def exact_float32_matmuls():
    """The references compare float32 rounds to 2e-5: pin exact products (GPUs default to TF32)."""
    with jax.default_matmul_precision("highest"):
        yield


SIZES = (12, 7, 3)  # unequal: with B=4 the clients take 3, 2 and 1 real steps per epoch
B, EPOCHS = 4, 2
STEPS = EPOCHS * -(-max(SIZES) // B)


def _setup(norm="group", sizes=SIZES):
    ds = load_digits(np.random.default_rng(0))
    start = np.cumsum([0, *sizes])
    partition = [np.arange(start[i], start[i + 1]) for i in range(len(sizes))]
    data = stack_clients(ds.train_x, ds.train_y, partition)
    model, params, state = build_model(
        model_config(depth=2, width=4, norm=norm), ds.input_shape, 10, jax.random.key(0)
    )
    return ds, partition, data, model, params, state


def _round(model, algorithm, momentum=0.0, **kwargs):
    opt = optax.sgd(LR, momentum=momentum or None)
    return jax.jit(make_round(model, opt, algorithm, batch_size=B, num_local_steps=STEPS,
                              divergence=False, **kwargs))  # fmt: skip


def _reference_client(model, params, stats, x, y, idx, mask, momentum=0.0, hook=None):
    """One client's local SGD as a Python loop over its real batches: ``(params, stats, steps)``."""

    def loss(p, s, bx, by):
        logits, new_s = model.apply(p, s, bx, train=True)
        return masked_cross_entropy(logits, by, jnp.ones(len(by), bool))[0], new_s

    grad = jax.jit(jax.grad(loss, has_aux=True))
    velocity = jax.tree.map(jnp.zeros_like, params)
    steps = 0
    for s in range(idx.shape[0]):
        real = idx[s][mask[s]]
        if len(real) == 0:
            continue
        g, stats = grad(params, stats, x[real], y[real])
        if hook is not None:
            g = hook(g, params)
        velocity = jax.tree.map(lambda v, gg: momentum * v + gg, velocity, g)
        params = jax.tree.map(lambda p, v: p - LR * v, params, velocity)
        steps += 1
    return params, stats, steps


def _reference_clients(setup, key, starts=None, hooks=None, momentum=0.0):
    ds, partition, data, model, params, state = setup
    batch_keys, _ = round_client_keys(key, data.client_ids)
    idx, mask = round_batch_indices(batch_keys, data.num_examples, max(SIZES), B, STEPS)
    idx, mask = np.asarray(idx), np.asarray(mask)
    out = []
    for c, part in enumerate(partition):
        start = params if starts is None else starts[c]
        hook = None if hooks is None else hooks[c]
        out.append(_reference_client(model, start, state, ds.train_x[part], ds.train_y[part],
                                     idx[c], mask[c], momentum, hook))  # fmt: skip
    return out


def _weights():
    return np.asarray(SIZES, np.float64) / sum(SIZES)


def _mean(trees, w):
    return jax.tree.map(
        lambda *xs: sum(wk * np.asarray(x, np.float64) for wk, x in zip(w, xs, strict=True)), *trees
    )


def _close(a, b, atol=2e-5):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=atol, rtol=1e-4), a, b)


def test_fedprox_with_mu_zero_is_fedavg_bit_for_bit():
    _, _, data, model, params, state = _setup()
    key = jax.random.key(3)
    a, _ = _round(model, algorithms.fedavg())(
        init_sim_state(params, state, algorithms.fedavg()), data, key
    )
    prox = algorithms.fedprox(0.0)
    b, _ = _round(model, prox)(init_sim_state(params, state, prox), data, key)
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)


def test_fednova_with_equal_step_counts_is_fedavg():
    _, _, data, model, params, state = _setup(sizes=(8, 8, 8))
    key = jax.random.key(4)
    nova = algorithms.fednova(0.9)
    avg = algorithms.fedavg()
    a, _ = _round(model, avg, 0.9)(init_sim_state(params, state, avg), data, key)
    b, _ = _round(model, nova, 0.9)(init_sim_state(params, state, nova), data, key)
    _close(a.params, b.params, atol=1e-6)


def test_fedprox_round_matches_reference():
    setup = _setup()
    _, _, data, model, params, state = setup
    key, mu = jax.random.key(5), 0.5
    prox = algorithms.fedprox(mu)
    new, _ = _round(model, prox)(init_sim_state(params, state, prox), data, key)
    hook = lambda g, p: jax.tree.map(lambda gg, pp, aa: gg + mu * (pp - aa), g, p, params)  # noqa: E731
    ref = _reference_clients(setup, key, hooks=[hook] * 3)
    _close(new.params, _mean([r[0] for r in ref], _weights()))


def test_fednova_round_matches_reference_with_unequal_steps_and_momentum():
    setup = _setup()
    _, _, data, model, params, state = setup
    key, rho = jax.random.key(6), 0.9
    nova = algorithms.fednova(rho)
    new, _ = _round(model, nova, rho)(init_sim_state(params, state, nova), data, key)
    ref = _reference_clients(setup, key, momentum=rho)
    steps = [r[2] for r in ref]
    assert len(set(steps)) == 3  # the point of FedNova: the clients took different step counts
    a = [sum((1 - rho ** (t + 1)) / (1 - rho) for t in range(k)) for k in steps]  # by the sum
    np.testing.assert_allclose(effective_steps(jnp.array(steps), rho), a, rtol=1e-5)
    w = _weights()
    tau_eff = float(np.dot(w, a))
    d = [jax.tree.map(lambda x, y, ai=ai: (np.asarray(x) - np.asarray(y)) / ai, params, r[0])
         for r, ai in zip(ref, a, strict=True)]  # fmt: skip
    expected = jax.tree.map(lambda x, m: np.asarray(x) - tau_eff * m, params, _mean(d, w))
    _close(new.params, expected)


def test_scaffold_round_matches_reference_over_two_rounds():
    setup = _setup()
    _, _, data, model, params, state = setup
    P = len(SIZES)
    alg = algorithms.scaffold(LR, P)
    round_fn = _round(model, alg)
    sim = init_sim_state(params, state, alg, num_clients=P)
    x = params
    c = jax.tree.map(np.zeros_like, params)
    c_i = [jax.tree.map(np.zeros_like, params) for _ in SIZES]
    for r in range(2):
        key = jax.random.key(10 + r)
        sim, _ = round_fn(sim, data, key)
        hooks = [
            (lambda g, p, ci=c_i[i], c=c: jax.tree.map(lambda gg, cc, cii: gg + cc - cii, g, c, ci))
            for i in range(P)
        ]
        ref = _reference_clients((*setup[:4], x, state), key, hooks=hooks)
        new_c_i = [
            jax.tree.map(lambda ci, cc, x0, y, k=r_[2]: ci - cc + (np.asarray(x0) - np.asarray(y)) / (k * LR),
                         c_i[i], c, x, r_[0])
            for i, r_ in enumerate(ref)
        ]  # fmt: skip
        c = jax.tree.map(lambda cc, *d: cc + sum(d) / P, c,
                         *[jax.tree.map(np.subtract, n, o) for n, o in zip(new_c_i, c_i, strict=True)])  # fmt: skip
        c_i = new_c_i
        x = _mean([r_[0] for r_ in ref], _weights())
        _close(sim.params, x, atol=5e-5)
        _close(sim.rule_state["c"], c, atol=5e-4)
        for i in range(P):
            _close(jax.tree.map(lambda a, i=i: a[i], sim.clients["algorithm"]), c_i[i], atol=5e-4)


def test_feddyn_round_matches_reference():
    setup = _setup()
    _, _, data, model, params, state = setup
    P, alpha = len(SIZES), 0.1
    alg = algorithms.feddyn(alpha, P)
    sim, _ = _round(model, alg)(init_sim_state(params, state, alg, num_clients=P), data,
                                jax.random.key(7))  # fmt: skip
    hook = lambda g, p: jax.tree.map(lambda gg, w, x0: gg + alpha * (w - x0), g, p, params)  # noqa: E731
    ref = _reference_clients(setup, jax.random.key(7), hooks=[hook] * P)
    h_i = [
        jax.tree.map(lambda y, x0: -alpha * (np.asarray(y) - np.asarray(x0)), r[0], params)
        for r in ref
    ]
    h = jax.tree.map(lambda *hs: sum(hs) / P, *h_i)  # h = -alpha/P sum(y_i - x)
    expected = jax.tree.map(lambda m, hh: m - hh / alpha, _mean([r[0] for r in ref], _weights()), h)
    _close(sim.params, expected, atol=5e-5)
    _close(sim.rule_state["h"], h, atol=1e-5)
    for i in range(P):
        _close(jax.tree.map(lambda a, i=i: a[i], sim.clients["algorithm"]), h_i[i], atol=1e-5)


def test_fedbn_keeps_batchnorm_parameters_local_and_averages_the_rest():
    setup = _setup(norm="batch")
    _, _, data, model, params, state = setup
    alg = algorithms.fedbn(state)
    sim0 = init_sim_state(params, state, alg, num_clients=3, local_model_state=True)
    assert set(sim0.clients["algorithm"]) == {"norm_0", "norm_1"}
    round_fn = _round(model, alg)
    sim1, _ = round_fn(sim0, data, jax.random.key(8))
    ref = _reference_clients(setup, jax.random.key(8))
    _close(sim1.params, _mean([r[0] for r in ref], _weights()))
    for i, r in enumerate(ref):
        _close(jax.tree.map(lambda a, i=i: a[i], sim1.clients["algorithm"]),
               {k: r[0][k] for k in ("norm_0", "norm_1")})  # fmt: skip
    # Round 2 starts each client's BatchNorm layers from its own, not from the average.
    sim2, _ = round_fn(sim1, data, jax.random.key(9))
    starts = [{**sim1.params, **{k: jax.tree.map(lambda a, i=i: a[i], sim1.clients["algorithm"][k])
                                 for k in ("norm_0", "norm_1")}} for i in range(3)]  # fmt: skip
    stats = [jax.tree.map(lambda a, i=i: a[i], sim1.clients["model_state"]) for i in range(3)]
    ds, partition = setup[0], setup[1]
    batch_keys, _ = round_client_keys(jax.random.key(9), data.client_ids)
    idx, mask = map(
        np.asarray, round_batch_indices(batch_keys, data.num_examples, max(SIZES), B, STEPS)
    )
    ref2 = [_reference_client(model, starts[i], stats[i], ds.train_x[p], ds.train_y[p], idx[i], mask[i])
            for i, p in enumerate(partition)]  # fmt: skip
    _close(sim2.params, _mean([r[0] for r in ref2], _weights()))


def test_fedadam_moves_against_the_pseudo_gradient():
    """One client moved every parameter by +1: FedAdam's first step moves the server by
    +lr * 1 / (1 + eps) (Adam's first step is lr * g / (|g| + eps) with bias correction)."""
    lr, eps = 0.1, 1e-3
    alg = algorithms.fedavg(optax.adam(lr, b1=0.9, b2=0.99, eps=eps))
    x = {"w": jnp.array([0.0, 2.0])}
    y = {"w": jnp.array([[1.0, 3.0]])}  # [C=1, ...]
    new, _ = alg.server_apply(x, alg.server_init(x), y, jnp.ones(1))
    np.testing.assert_allclose(new["w"], [lr / (1 + eps), 2 + lr / (1 + eps)], rtol=1e-6)


def _quadratic_run(algorithm, a, b, rounds, local_steps, lr):
    """Clients f_i(w) = a_i/2 (w - b_i)^2 trained by ``algorithm`` through its own interface."""
    num = len(a)
    weights = jnp.full((num,), 1.0 / num)
    w0 = {"w": jnp.zeros(())}
    rule_state = algorithm.server_init(w0)
    persistent = jax.tree.map(
        lambda x: jnp.broadcast_to(x, (num, *x.shape)), algorithm.persistent_init(w0)
    )

    def client(params, persistent, ai, bi, rule_state):
        start, ctx = algorithm.client_init(rule_state, persistent, params)

        def step(p, _):
            g = {"w": ai * (p["w"] - bi)}
            if algorithm.grad_hook is not None:
                g = algorithm.grad_hook(g, p, ctx)
            return jax.tree.map(lambda x, gg: x - lr * gg, p, g), None

        end, _ = jax.lax.scan(step, start, None, length=local_steps)
        return algorithm.client_final(
            rule_state, start, end, ctx, persistent, jnp.int32(local_steps)
        )

    @jax.jit
    def one_round(params, rule_state, persistent):
        outputs, persistent = jax.vmap(client, in_axes=(None, 0, 0, 0, None))(
            params, persistent, a, b, rule_state
        )
        params, rule_state = algorithm.server_apply(params, rule_state, outputs, weights)
        return params, rule_state, persistent

    params = w0
    for _ in range(rounds):
        params, rule_state, persistent = one_round(params, rule_state, persistent)
    return float(params["w"])


def test_scaffold_and_feddyn_reach_the_optimum_where_fedavg_stalls():
    a = jnp.array([1.0, 4.0, 0.5, 2.0])
    b = jnp.array([3.0, -1.0, 5.0, 0.0])
    optimum = float(jnp.sum(a * b) / jnp.sum(a))  # of the mean objective (equal weights)
    kwargs = dict(rounds=300, local_steps=10, lr=0.1)
    fedavg = _quadratic_run(algorithms.fedavg(), a, b, **kwargs)
    scaffold = _quadratic_run(algorithms.scaffold(0.1, 4), a, b, **kwargs)
    feddyn = _quadratic_run(algorithms.feddyn(0.5, 4), a, b, **kwargs)
    assert abs(fedavg - optimum) > 0.1, (fedavg, optimum)  # client drift: a biased fixed point
    assert abs(scaffold - optimum) < 1e-4, (scaffold, optimum)
    assert abs(feddyn - optimum) < 1e-4, (feddyn, optimum)


def test_clients_not_sampled_keep_their_state_bit_for_bit():
    _, _, data, model, params, state = _setup()
    alg = algorithms.scaffold(LR, 3)
    round_fn = _round(model, alg, cohort_size=1)
    sim = init_sim_state(params, state, alg, num_clients=3)
    sim, _ = round_fn(sim, data, jax.random.key(1))  # client states become non-zero
    for r in range(2, 5):
        before = jax.tree.map(np.asarray, sim.clients["algorithm"])
        sim, _ = round_fn(sim, data, jax.random.key(r))
        after = jax.tree.map(np.asarray, sim.clients["algorithm"])
        changed = [i for i in range(3)
                   if any(not np.array_equal(x[i], y[i]) for x, y in
                          zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True))]  # fmt: skip
        assert len(changed) == 1  # the one sampled client; the others are untouched


@pytest.mark.parametrize("chunk", [1, 2])
def test_scaffold_chunked_equals_vmap(chunk):
    from fedjax_deep.fl.execution import Execution

    _, _, data, model, params, state = _setup()
    alg = algorithms.scaffold(LR, 3)
    key = jax.random.key(2)
    sim = init_sim_state(params, state, alg, num_clients=3)
    a, _ = _round(model, alg)(sim, data, key)
    b, _ = _round(model, alg, execution=Execution(chunk))(sim, data, key)
    _close(a.params, b.params, atol=1e-6)
    _close(a.clients, b.clients, atol=1e-5)
    _close(a.rule_state, b.rule_state, atol=1e-6)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_scaffold_control_variate_is_the_gradient_under_a_constant_gradient(momentum):
    """A client whose gradient is constant g: after K SGD steps (with momentum) its new c_i is
    exactly g, so option II's normalization must count momentum's effective steps."""
    lr, k, g = 0.1, 7, jnp.array([0.5, -2.0])
    alg = algorithms.scaffold(lr, 1, momentum=momentum)
    x = {"w": jnp.zeros(2)}
    opt = optax.sgd(lr, momentum=momentum or None)
    y, opt_state = x, opt.init(x)
    for _ in range(k):
        updates, opt_state = opt.update({"w": g}, opt_state, y)
        y = optax.apply_updates(y, updates)
    zeros = {"w": jnp.zeros(2)}
    rule_state = alg.server_init(x)  # holds lr and momentum, as a sweep member's state does
    (_, delta_c), c_i = alg.client_final(rule_state, x, y, None, zeros, jnp.int32(k))
    np.testing.assert_allclose(c_i["w"], g, rtol=1e-5)


def test_the_registry_builds_every_algorithm_and_what_it_declares():
    """Each entry builds its algorithm from ``config.algorithm``; what an algorithm keeps per client
    is measured from shapes alone (the memory estimate's figure), and FedBN asks for local
    BatchNorm statistics."""
    from fedjax_deep.config import default_config

    _, _, _, _, params, state = _setup(norm="batch")
    shapes = jax.eval_shape(lambda: (params, state))
    setting = algorithms.Setting(optax.sgd(1.0), 3, LR, 0.9, shapes[1])
    config = default_config()
    built = {
        name: spec.build(config.algorithm, setting) for name, spec in algorithms.REGISTRY.items()
    }
    assert {name: alg.name for name, alg in built.items()} == {n: n for n in algorithms.REGISTRY}
    param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
    norm_bytes = sum(
        x.nbytes for x in jax.tree.leaves({k: params[k] for k in ("norm_0", "norm_1")})
    )
    assert {name: alg.persistent_bytes(shapes[0]) for name, alg in built.items()} == {
        "fedavg": 0, "fedprox": 0, "fednova": 0, "scaffold": param_bytes, "feddyn": param_bytes,
        "fedbn": norm_bytes,
    }  # fmt: skip
    assert [n for n, alg in built.items() if alg.local_model_state] == ["fedbn"]
    assert algorithms.REGISTRY["fedprox"].hparams == ("mu",)
    assert not algorithms.REGISTRY["feddyn"].uses_server_optimizer
    assert algorithms.REGISTRY["fedbn"].needs_batch_norm


@pytest.mark.parametrize("name", ["scaffold", "feddyn"])
def test_control_variate_weights_pick_the_fixed_point(name):
    """Least-squares clients of unequal sizes, float64, full batch: with ``variate_weights`` =
    ``'uniform'`` (the papers') SCAFFOLD and FedDyn reach the minimizer of the plain mean of client
    losses; with ``'examples'`` the example-weighted one that FedAvg's average targets."""
    from fedjax_deep.fl import least_squares

    with jax.enable_x64(True):
        data = least_squares.make_clients(np.random.default_rng(0), (6, 20, 9, 40), 3)
        targets = {w: least_squares.minimizer(data, w) for w in ("uniform", "examples")}
        assert np.linalg.norm(targets["uniform"] - targets["examples"]) > 0.2
        for weighting, target in targets.items():
            if name == "scaffold":
                alg = algorithms.scaffold(0.05, 4, variate_weights=weighting)
            else:
                alg = algorithms.feddyn(0.5, 4, variate_weights=weighting)
            path, _ = least_squares.run(alg, data, (8,) * 4, 0.05, 300)
            np.testing.assert_allclose(path[-1], target, atol=1e-8, err_msg=weighting)
