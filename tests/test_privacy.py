"""User-level DP-FedAvg (fedjax_deep.fl.privacy) and its accountant (fedjax_deep.accounting):
exact clipping, the noise's standard deviation, FedAvg bit for bit at z = 0 and an infinite clip
norm, epsilon against dp-accounting itself, Poisson cohorts, the budget stop, resume, and a sweep
over noise, clip norm, learning rate and seed in one compiled program."""

import json
import pathlib

import dp_accounting as dpa
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import model_config
from fedjax_deep import accounting, train
from fedjax_deep import sweep as sweep_lib
from fedjax_deep.config import apply_overrides, load_config, validate
from fedjax_deep.data import load_digits, stack_clients
from fedjax_deep.errors import ConfigError
from fedjax_deep.fl import algorithms, init_sim_state, make_round, privacy
from fedjax_deep.models import build_model

TINY = str(pathlib.Path(__file__).parents[1] / "configs" / "digits_tiny.py")
B, STEPS = 4, 2


# -- the pure pieces --------------------------------------------------------------------------
def test_clipping_is_exact_flat_and_per_layer():
    with jax.enable_x64(True):
        s = 1.5
        big = {"a": jnp.array([[3.0, 4.0]]) * (3 * s / 5), "b": jnp.zeros((1, 2, 2))}
        small = {"a": jnp.array([[0.3, -0.4]]), "b": jnp.full((1, 2, 2), 0.1)}
        deltas = jax.tree.map(lambda x, y: jnp.concatenate([x, y]).astype(jnp.float64), big, small)
        clipped, norms = privacy.clip_updates(deltas, s)
        np.testing.assert_allclose(norms, [3 * s, np.sqrt(0.25 + 0.04)], rtol=1e-15)
        # norm 3S comes out at exactly S, in the same direction; one under S is unchanged
        np.testing.assert_allclose(clipped["a"][0], [0.6 * s, 0.8 * s], rtol=1e-15)
        assert np.array_equal(clipped["a"][1], deltas["a"][1])
        assert np.array_equal(clipped["b"][1], deltas["b"][1])
        # per layer: each of the L = 2 leaves to S / sqrt(2), so the whole stays within S
        clipped, _ = privacy.clip_updates(deltas, s, per_layer=True)
        np.testing.assert_allclose(np.linalg.norm(clipped["a"][0]), s / np.sqrt(2), rtol=1e-15)
        assert np.array_equal(clipped["b"][0], deltas["b"][0])  # zero stays zero
        assert np.array_equal(clipped["a"][1], deltas["a"][1])  # 0.5 < S / sqrt(2)
        tiny = privacy.clip_updates(deltas, 0.3, per_layer=True)[0]
        for leaf in jax.tree.leaves(tiny):
            assert np.linalg.norm(leaf[1]) <= 0.3 / np.sqrt(2) * (1 + 1e-15)


def test_private_mean_is_the_clipped_sum_over_the_expected_cohort_plus_noise():
    """Against NumPy in float64: server + (sum over the clients taking part of clip(Delta_k)
    + z S N) / m, with N the noise the key draws."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        server = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=(2,))}
        client = {k: v[None] + rng.normal(size=(4, *v.shape)) for k, v in server.items()}
        mask = np.array([1.0, 1.0, 0.0, 1.0])
        s, z, m, key = 1.3, 0.7, 5, jax.random.key(3)
        got, _ = privacy.private_mean_params(key, server, client, jnp.asarray(mask), m, s, z * s)
        noise = privacy.gaussian_noise(key, server, jnp.asarray(1.0))
        flat = np.concatenate([(client[k] - server[k][None]).reshape(4, -1) for k in server], 1)
        scale = np.minimum(1.0, s / np.linalg.norm(flat, axis=1))
        for k in server:
            delta = (client[k] - server[k][None]) * scale.reshape(-1, *[1] * server[k].ndim)
            want = server[k] + (np.tensordot(mask, delta, 1) + z * s * np.asarray(noise[k])) / m
            np.testing.assert_allclose(got[k], want, rtol=1e-12, atol=1e-12)


def test_noise_std_over_many_draws_is_z_s_over_the_expected_cohort():
    z, s, m, draws = 1.5, 2.0, 4, 4000
    server = {"w": jnp.zeros((25,)), "b": jnp.zeros((5,))}
    client = jax.tree.map(lambda x: jnp.zeros((3, *x.shape)), server)
    mask = jnp.ones(3)

    def one(key):
        return privacy.private_mean_params(key, server, client, mask, m, s, z * s)[0]

    out = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), draws))
    x = np.concatenate([np.asarray(v).reshape(draws, -1) for v in jax.tree.leaves(out)], 1)
    n = x.size  # 120,000 samples: the std's relative sampling error is 1 / sqrt(2 n) = 0.2%
    assert abs(x.std() / (z * s / m) - 1) < 4 / np.sqrt(2 * n)
    assert abs(x.mean()) < 4 * (z * s / m) / np.sqrt(n)


def test_adaptive_clipping_moves_the_clip_norm_geometrically_to_the_target_quantile():
    """Andrew et al. 2021: S <- S exp(-eta (b - gamma)), b the (noised) fraction of updates within
    S over the expected cohort; iterated on fixed updates of norms 1..10 it settles at the median.
    The update's noise multiplier leaves room for the count's: z_Delta^-2 = z^-2 - (2 sigma_b)^-2."""
    norms = jnp.arange(1.0, 11.0)
    server = {"w": jnp.zeros((2,))}
    outputs = {"w": jnp.stack([norms, jnp.zeros(10)], axis=1)}  # client k's update has norm k+1
    alg = privacy.private(algorithms.fedavg(), noise_multiplier=0.0, clip_norm=3.5,
                          expected_cohort=10, adaptive_quantile=0.5, adaptive_lr=0.2)  # fmt: skip
    apply = jax.jit(lambda rs: alg.server_apply(server, rs, outputs, jnp.full(10, 0.1),
                                                key=jax.random.key(0))[1])  # fmt: skip
    rule_state = alg.server_init(server)
    after = apply(rule_state)
    # 3 of 10 within 3.5: S * exp(-0.2 * (0.3 - 0.5))
    assert float(after["clip_norm"]) == pytest.approx(3.5 * np.exp(0.04), rel=1e-6)
    for _ in range(300):
        rule_state = apply(rule_state)
    assert 5.0 <= float(rule_state["clip_norm"]) <= 6.0 * np.exp(0.1)
    z_delta, sigma = privacy.adaptive_stddevs(jnp.float32(1.0), jnp.float32(2.0))
    assert float(z_delta) == pytest.approx((1.0 - 1 / 16) ** -0.5, rel=1e-6)
    assert float(sigma) == 2.0
    assert [float(x) for x in privacy.adaptive_stddevs(jnp.float32(0.0), 2.0)] == [0.0, 0.0]


# -- the round ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def setup():
    ds = load_digits(np.random.default_rng(0))
    partition = [np.arange(8 * i, 8 * i + 8) for i in range(6)]  # six clients of equal size
    data = stack_clients(ds.train_x, ds.train_y, partition)
    model, params, stats = build_model(
        model_config(name="plain_mlp", depth=1, width=4), ds.input_shape, 10, jax.random.key(0)
    )
    return data, model, params, stats


def _round(model, algorithm, **kwargs):
    fn = make_round(model, optax.sgd(0.1), algorithm, batch_size=B, num_local_steps=STEPS,
                    divergence=False, **kwargs)  # fmt: skip
    return jax.jit(fn)


def _two_rounds(setup, algorithm, fn):
    data, model, params, stats = setup
    state = init_sim_state(params, stats, algorithm, num_clients=data.num_clients)
    for r in range(2):
        state, metrics = fn(state, data, jax.random.key(r))
    return state, metrics


def test_zero_noise_and_an_infinite_clip_norm_is_fedavg_bit_for_bit(setup):
    data, model, params, stats = setup
    plain, _ = _two_rounds(setup, algorithms.fedavg(), _round(model, algorithms.fedavg()))
    dp = privacy.private(
        algorithms.fedavg(), noise_multiplier=0.0, clip_norm=np.inf, expected_cohort=6
    )
    fn = _round(model, dp)  # z and S are state: one program for every value below
    state = init_sim_state(params, stats, dp, num_clients=data.num_clients)
    private, metrics = _two_rounds(setup, dp, fn)
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(private.params), strict=True):
        assert np.array_equal(a, b)
    assert float(metrics["privacy/unclipped_fraction"]) == 1.0

    # z > 0: the same round plus the noise the round key's NOISE_TAG draws, z S / m per coordinate
    def with_coefficients(z, s):
        rule_state = {**state.rule_state, "noise_multiplier": jnp.float32(z),
                      "clip_norm": jnp.float32(s)}  # fmt: skip
        return fn(state.replace(rule_state=rule_state), data, jax.random.key(0))[0]

    after, clean = with_coefficients(0.5, 1e6), with_coefficients(0.0, 1e6)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(0), privacy.NOISE_TAG), 0)
    noise = privacy.gaussian_noise(key, params, jnp.asarray(0.5 * 1e6 / 6))
    for a, c, n in zip(*map(jax.tree.leaves, (after.params, clean.params, noise)), strict=True):
        np.testing.assert_allclose(a - c, n, rtol=1e-5, atol=0.05)
    assert fn._cache_size() == 1


def test_fedprox_under_dp_reads_its_own_coefficient(setup):
    """The wrapper hands the inner algorithm its own server state (FedProx's mu), traced only."""
    data, model, params, stats = setup
    dp = privacy.private(algorithms.fedprox(0.1), noise_multiplier=1.0, clip_norm=1.0,
                         expected_cohort=6)  # fmt: skip
    state = init_sim_state(params, stats, dp, num_clients=data.num_clients)
    fn = make_round(model, optax.sgd(0.1), dp, batch_size=B, num_local_steps=STEPS,
                    divergence=False)  # fmt: skip
    after, metrics = jax.eval_shape(fn, state, data, jax.random.key(0))
    assert jax.tree.structure(after.rule_state) == jax.tree.structure(state.rule_state)
    assert "mu" in state.rule_state["inner"] and "privacy/clip_norm" in metrics


def test_poisson_cohorts_have_the_right_mean_and_padded_slots_change_nothing(setup):
    count = jax.jit(jax.vmap(lambda k: privacy.sample_poisson_cohort(k, jnp.ones(50), 0.2, 30)[1]))
    counts = count(jax.random.split(jax.random.key(1), 4000)).sum(axis=1)
    mean, sd = 50 * 0.2, np.sqrt(50 * 0.2 * 0.8)
    assert abs(float(counts.mean()) - mean) < 4 * sd / np.sqrt(4000)
    # A Poisson round (6 slots, q = 0.5) with SCAFFOLD's per-client state: the clients drawn train
    # as a round of just them would; every other row of the population is untouched.
    data, model, params, stats = setup
    alg = algorithms.scaffold(0.1, data.num_clients)
    state = init_sim_state(params, stats, alg, num_clients=data.num_clients)
    key = jax.random.key(7)
    after, metrics = _round(model, alg, cohort_size=6, poisson_rate=0.5)(state, data, key)
    round_key, cohort_key = jax.random.split(key)
    ids, part, _ = privacy.sample_poisson_cohort(cohort_key, data.num_examples, 0.5, 6)
    drawn = np.asarray(ids)[np.asarray(part)]
    assert 0 < len(drawn) < 6 and int(metrics["train/cohort_size"]) == len(drawn)
    only = jax.tree.map(lambda a: a[drawn], data)
    alone, _ = _round(model, alg, cohort_size=len(drawn), draw_cohort=False)(state, only, round_key)
    for a, b in zip(jax.tree.leaves(after.params), jax.tree.leaves(alone.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    c_after, c_before = after.clients["algorithm"], state.clients["algorithm"]
    others = np.setdiff1d(np.arange(6), drawn)
    for a, b, c in zip(*map(jax.tree.leaves, (c_after, c_before, alone.clients["algorithm"])),
                       strict=True):  # fmt: skip
        assert np.array_equal(a[others], b[others])
        np.testing.assert_allclose(a[drawn], c[drawn], rtol=1e-4, atol=1e-6)


# -- the accountant ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sampling, name, event",
    [
        (accounting.Sampling("poisson", 100, 10, 36), "rdp",
         dpa.PoissonSampledDpEvent(0.1, dpa.GaussianDpEvent(1.1))),
        (accounting.Sampling("poisson", 100, 10, 36), "pld",
         dpa.PoissonSampledDpEvent(0.1, dpa.GaussianDpEvent(1.1))),
        (accounting.Sampling("fixed", 100, 10), "rdp",
         dpa.SampledWithoutReplacementDpEvent(100, 10, dpa.GaussianDpEvent(0.55))),
        (accounting.Sampling("full", 8, 8), "pld", dpa.GaussianDpEvent(1.1)),
    ],
)  # fmt: skip
def test_epsilon_equals_a_direct_dp_accounting_computation(sampling, name, event):
    rounds, delta = 7, 1e-5
    relation = dpa.NeighboringRelation.REPLACE_ONE if sampling.kind == "fixed" else (
        dpa.NeighboringRelation.ADD_OR_REMOVE_ONE)  # fmt: skip
    acc = dpa.pld.PLDAccountant(relation) if name == "pld" else dpa.rdp.RdpAccountant(
        neighboring_relation=relation)  # fmt: skip
    want = acc.compose(event, rounds).get_epsilon(delta)
    got = accounting.epsilon(sampling, 1.1, delta, rounds, name)
    # RDP: the same numbers; PLD: the accountant composes the same PLD, up to its FFT's rounding
    assert got == pytest.approx(want, rel=1e-12 if name == "rdp" else 1e-7)


def test_calibrated_noise_is_the_smallest_that_meets_the_target():
    s = accounting.Sampling("poisson", 100, 10, 36)
    z = accounting.calibrate(s, 2.0, 1e-5, 20, "rdp")
    assert accounting.epsilon(s, z, 1e-5, 20, "rdp") <= 2.0
    assert accounting.epsilon(s, z - 1e-3, 1e-5, 20, "rdp") > 2.0


def test_privacy_config_rules_name_the_field():
    def check(*overrides):
        c = load_config(TINY)
        apply_overrides(c, list(overrides))
        with pytest.raises(ConfigError) as e:
            validate(c)
        return str(e.value)

    assert "privacy.noise_multiplier" in check("privacy.noise_multiplier=1.0")
    assert "needs mode fl" in check("privacy.clip_norm=1.0", "mode=centralized")
    assert "fedavg or fedprox" in check("privacy.clip_norm=1.0", "algorithm.name=scaffold")
    assert "fl.cohort_size > 0" in check("fl.cohort_sampling=poisson")
    assert "PLD" in check("privacy.clip_norm=1.0", "privacy.noise_multiplier=1.0",
                          "fl.cohort_size=2", "privacy.accountant=pld")  # fmt: skip
    assert "2 * count" in check("privacy.clip_norm=1.0", "privacy.noise_multiplier=1.0",
                                "privacy.adaptive_quantile=0.5")  # fmt: skip


# -- runs: budget stop, resume, one program for a sweep ----------------------------------------
DP = ["--config.fl.num_clients=4", "--config.fl.divergence=false", "--config.model.depth=1",
      "--config.privacy.clip_norm=0.5", "--config.privacy.noise_multiplier=0.6",
      "--config.checkpoint.every_rounds=1"]  # fmt: skip


def _run(workdir, *overrides):
    config = load_config(TINY)
    apply_overrides(config, [*DP, *overrides])
    return train.run(config, workdir, progress=False)


def _rows(workdir):
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _epsilons(rounds):
    full = accounting.Sampling("full", 4, 4)
    return [accounting.epsilon(full, float(np.float32(0.6)), 1e-5, r, "rdp") for r in rounds]


def test_a_run_stops_before_the_round_that_would_exceed_its_budget(tmp_path, capsys):
    eps = _epsilons((1, 2))
    out = _run(tmp_path, "--config.num_rounds=2", f"--config.privacy.target_epsilon={sum(eps) / 2}")
    lines = [x for x in capsys.readouterr().err.splitlines() if "privacy budget" in x]
    assert len(lines) == 1 and "round 2 would bring epsilon to" in lines[0], lines
    assert "stopped after round 1" in lines[0]
    rows = _rows(tmp_path)
    assert [r["round"] for r in rows] == [1]
    assert rows[0]["privacy/epsilon"] == pytest.approx(eps[0], rel=1e-12)
    assert out["privacy"]["stopped_by_budget_after_round"] == 1
    assert out["privacy"]["epsilon"] == pytest.approx(eps[0], rel=1e-12)


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_runs_epsilons_and_noise(tmp_path):
    eps = _epsilons((1, 2, 3))
    whole = _run(tmp_path / "whole", "--config.num_rounds=3")
    rows = _rows(tmp_path / "whole")
    assert [row["privacy/epsilon"] for row in rows] == pytest.approx(eps, rel=1e-12)
    assert whole["privacy"]["epsilon"] == pytest.approx(eps[-1], rel=1e-12)
    # interrupted after 2 rounds and resumed: the same epsilons and the same noisy models
    _run(tmp_path / "resumed", "--config.num_rounds=2")
    _run(tmp_path / "resumed", "--config.num_rounds=3")
    again = _rows(tmp_path / "resumed")
    assert [r["privacy/epsilon"] for r in again] == [r["privacy/epsilon"] for r in rows]
    assert [r["eval/loss"] for r in again] == [r["eval/loss"] for r in rows]


SWEEP = (("privacy.noise_multiplier", (0.6, 1.2)), ("privacy.clip_norm", (0.5, 1.0)),
         ("client_opt.learning_rate", (0.05, 0.1)), ("seed", (0, 1)))  # fmt: skip


def test_a_sweep_over_noise_clip_lr_and_seed_is_one_group():
    """Fast: the 16 points differ only in traced fields, so they are one program's candidates
    (the slow sibling runs them; tests/test_sweep_axis.py's 'dp' case checks each member equals
    its point run alone, bit for bit)."""
    config = load_config(TINY)
    apply_overrides(config, [*DP, f"--config.sweep={SWEEP!r}"])
    groups = sweep_lib.sweep_groups(sweep_lib.expand(config))
    assert [len(g) for g in groups] == [16]


@pytest.mark.slow
def test_a_sweep_over_noise_clip_lr_and_seed_is_one_program(tmp_path):
    out = _run(tmp_path, "--config.num_rounds=1", f"--config.sweep={SWEEP!r}")
    assert len(out) == 16
    infos = [json.loads((tmp_path / n / "run_info.json").read_text()) for n in out]
    assert {info["sweep_axis"]["members"] for info in infos} == {16}
    full = accounting.Sampling("full", 4, 4)
    for name, summary in out.items():
        z = 0.6 if "noise_multiplier-0.6" in name else 1.2
        want = accounting.epsilon(full, float(np.float32(z)), 1e-5, 1, "rdp")
        assert summary["privacy"]["epsilon"] == pytest.approx(want, rel=1e-12)
        clip = _rows(tmp_path / name)[0]["privacy/clip_norm"]
        assert clip == (0.5 if "clip_norm-0.5" in name else 1.0)
